import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { errorCode } from '../db/failure-reason';
import type { StatusEvent } from '../messages/status-event';
import type { SpoolLine } from './spool-lines';

/**
 * What the spool's parts share: the write and replay core (spool.ts), the dead-letter file
 * (spool-dead-letters.ts) and the first release's dead letters (spool-legacy.ts) — bounds on
 * what is held in memory, the marks on the spool's own disk failures, and file helpers.
 */

// An event's line is at most a few hundred kB (a 64 KiB callback, its relay copy, escaping):
// a longer one was never written by an append, and is not held in memory to be decoded.
export const MAX_LINE_BYTES = 16 * 1024 * 1024;
// A replay transaction, or a requeue's append, holds at most this much of the spool (and at
// most `chunkSize`, or CHUNK_MAX_EVENTS, events): 500 callbacks of 64 KiB would be 75 MB of
// text, and again as much in decoded events and statement parameters.
const CHUNK_MAX_BYTES = 16 * 1024 * 1024;
export const CHUNK_MAX_EVENTS = 500;
const NEWLINE = 0x0a;

/**
 * Gathers events into chunks of at most `maxEvents` events and CHUNK_MAX_BYTES of their lines,
 * handing each full chunk to `flush` as it fills, and what is left at `end()`.
 */
export function inChunks(
  maxEvents: number,
  flush: (events: StatusEvent[]) => Promise<void>,
): { add(event: StatusEvent, lineBytes: number): Promise<void>; end(): Promise<void> } {
  let chunk: StatusEvent[] = [];
  let bytes = 0;
  const end = async (): Promise<void> => {
    if (chunk.length === 0) return;
    const full = chunk;
    chunk = [];
    bytes = 0;
    await flush(full);
  };
  return {
    async add(event, lineBytes) {
      chunk.push(event);
      bytes += lineBytes;
      if (chunk.length >= maxEvents || bytes >= CHUNK_MAX_BYTES) await end();
    },
    end,
  };
}

/**
 * Errors of the spool's own disk that a replay rethrows (a dead letter refused by a full disk,
 * a replayed segment that cannot be removed): its caller must not report them as the
 * database's (isSpoolDiskFailure). Marked, not wrapped: callers still read their `code`.
 */
const diskFailures = new WeakSet<object>();

export function markDiskFailure(error: unknown): void {
  if (typeof error === 'object' && error !== null) diskFailures.add(error);
}

/** Whether a replay failed on the spool's own disk rather than on the database. */
export function isSpoolDiskFailure(error: unknown): boolean {
  return typeof error === 'object' && error !== null && diskFailures.has(error);
}

/** Errors of a file system without room for what is written (the spool volume full). */
const LACK_OF_SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

export function isLackOfSpace(error: unknown): boolean {
  return LACK_OF_SPACE.has(errorCode(error) ?? '');
}

export async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A line's bytes' hash (its text hashes as its UTF-8 bytes); undefined when too long to hold. */
export function lineHash(line: SpoolLine): string | undefined {
  const content = line.undecodable ?? line.text;
  return content === undefined ? undefined : sha256(content);
}

export function sha256(content: string | Uint8Array): string {
  return createHash('sha256').update(content).digest('hex');
}

/** Copies `bytes` bytes at `offset` of `source`, and a newline, to the end of `target`. */
export async function copyLine(
  source: FileHandle,
  target: FileHandle,
  offset: number,
  bytes: number,
): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(bytes + 1, 1 << 20));
  for (let done = 0; done < bytes;) {
    const { bytesRead } = await source.read(
      buffer,
      0,
      Math.min(buffer.length, bytes - done),
      offset + done,
    );
    if (bytesRead === 0) throw new Error('dead-letter file shrank while being requeued');
    await writeAll(target, buffer.subarray(0, bytesRead));
    done += bytesRead;
  }
  await writeAll(target, Buffer.from('\n'));
}

export async function endsWithNewline(handle: FileHandle, size: number): Promise<boolean> {
  const last = Buffer.alloc(1);
  const { bytesRead } = await handle.read(last, 0, 1, size - 1);
  return bytesRead === 1 && last[0] === NEWLINE;
}

export async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    const { bytesWritten } = await handle.write(data, offset);
    offset += bytesWritten;
  }
}
