import { open, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { errorCode } from '../db/failure-reason';
import type { Logger } from '../logger';
import { DEAD_LETTER_FILE, MAX_DEAD_LETTER_BYTES } from './spool-dead-letters';
import {
  copyLine,
  endsWithNewline,
  exists,
  isLackOfSpace,
  lineHash,
  sha256,
  syncDirectory,
  writeAll,
} from './spool-files';
import { countLines, readLines } from './spool-lines';

// The dead-letter file's name in the first release (copyLegacyDeadLetters).
const LEGACY_DEAD_LETTER_FILE = 'rejected.jsonl';

/** The first release's dead-letter file in a spool directory, moved into today's. */
export interface LegacyDeadLetters {
  /** Its path: `rejected.jsonl` in the spool directory. */
  readonly file: string;
  /**
   * Moves it into the dead-letter file (adoptLegacy); resolves with how many of its records are
   * not adopted yet (0 unless the volume is full).
   */
  adopt(): Promise<number>;
  /** Copied into the dead-letter file by the last adoption, but not removed. */
  notRemoved(): boolean;
}

export function legacyDeadLetters(dir: string, logger: Logger): LegacyDeadLetters {
  const deadLetterFile = path.join(dir, DEAD_LETTER_FILE);
  /**
   * On a full volume, best effort: the copy needs free blocks, and a volume the first release
   * filled during an outage would otherwise refuse every start (ENOSPC) — the spool never
   * opened, never drained, so the space never freed (README, "One process per SPOOL_DIR").
   * An adoption failed for lack of space leaves the dead-letter file as it was and
   * rejected.jsonl in place (its records still counted), and is tried again at the next open
   * or requeue; the adoption skips what an earlier one copied, so nothing is lost or doubled.
   */
  const legacy = path.join(dir, LEGACY_DEAD_LETTER_FILE);
  let legacyWarned = false;
  // rejected.jsonl copied into the dead-letter file but not removed: a requeue then refuses
  // (spool-dead-letters.ts), as the next adoption would bring back the records it takes out of
  // that file.
  let legacyNotRemoved = false;
  async function adoptLegacy(): Promise<number> {
    legacyNotRemoved = false;
    try {
      if (!(await copyLegacyDeadLetters(legacy, deadLetterFile))) return 0;
      legacyNotRemoved = true;
      // The dead-letter file may be new: its entry first, then the old file's removal.
      await syncDirectory(dir);
      await unlink(legacy);
      legacyNotRemoved = false;
      await syncDirectory(dir);
      return 0;
    } catch (error) {
      // Only a lack of space is waited out; any other failure (a rejected.jsonl this process
      // may not read, an I/O error) is said at once, as before, not counted as no dead letters.
      // Without room the first release's dead letters wait for it; any other failure is said.
      if (!isLackOfSpace(error)) throw error;
      if (!legacyWarned) {
        legacyWarned = true;
        logger.warn(
          { err: error, dir, code: errorCode(error) },
          `the first release's dead letters (${LEGACY_DEAD_LETTER_FILE}) could not be moved into ${DEAD_LETTER_FILE}: they stay where they are, counted, and are moved at the next start or requeue`,
        );
      }
      // Copied whole but not removed: counted in the dead-letter file already (and not copied
      // again by the next adoption).
      return legacyNotRemoved ? 0 : countLines(legacy);
    }
  }
  return { file: legacy, adopt: adoptLegacy, notRemoved: () => legacyNotRemoved };
}

/**
 * The first release named the dead-letter file `rejected.jsonl` (same records): its dead
 * letters are acknowledged events too, so they join the current file — counted, visible and
 * requeued like the others — instead of lying unseen in the directory. Copied and synced here,
 * then removed (legacyDeadLetters's adoptLegacy); false when there is none. Again and again
 * until it is removed, so without loss or double: a copy that fails is cut off again (a torn
 * part would be a record of its own), as is, at the next adoption, the part of a record a
 * crashed copy left; and a record an earlier copy already put in the dead-letter file — a
 * crash, or a failed removal, before `rejected.jsonl` was gone — is not copied twice (the same
 * bytes: each record carries its `rejected_at`; only a line too long to hold, which no record
 * is, would be copied again).
 */
async function copyLegacyDeadLetters(legacy: string, deadLetterFile: string): Promise<boolean> {
  let source: FileHandle;
  try {
    source = await open(legacy, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  try {
    const { hashes: present, end: complete } = await lineHashes(deadLetterFile);
    // Read too: whether its last record ends with its newline.
    const target = await open(deadLetterFile, 'a+', 0o600);
    try {
      let { size } = await target.stat();
      try {
        if (size > 0 && !(await endsWithNewline(target, size))) {
          // A copy that crashed part-way left the start of a record: cut off, it is copied
          // whole below. Kept, it would become an unreadable dead letter of its own, counted
          // for good. Any other unfinished record stays a line of its own.
          const cut = await tornCopyBytes(target, complete, size, legacy);
          if (cut > 0) {
            await target.truncate(size - cut);
            size -= cut;
          } else await writeAll(target, Buffer.from('\n'));
        }
        const copied = (hash: string | undefined): boolean =>
          hash !== undefined && present.has(hash);
        let end = 0;
        for await (const line of readLines(legacy, MAX_DEAD_LETTER_BYTES)) {
          end = line.offset + line.bytes + 1;
          if (line.bytes === 0 || copied(lineHash(line))) continue;
          await copyLine(source, target, line.offset, line.bytes);
        }
        // A torn last record stays one unreadable record, not the start of the next one.
        const torn = (await source.stat()).size - end;
        if (torn > 0) {
          const tail = torn <= MAX_DEAD_LETTER_BYTES ? await readAt(source, end, torn) : undefined;
          if (!copied(tail && sha256(tail))) await copyLine(source, target, end, torn);
        }
        await target.datasync();
      } catch (error) {
        await target.truncate(size).catch(() => undefined);
        throw error;
      }
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
  return true;
}

/**
 * The length of the unfinished last record of the dead-letter file (`target`: complete lines
 * up to `complete`, `size` bytes) when its bytes begin a line of `legacy` — what a copy of it
 * left — else 0.
 */
async function tornCopyBytes(
  target: FileHandle,
  complete: number,
  size: number,
  legacy: string,
): Promise<number> {
  // Longer than any record: not the start of one.
  if (size - complete > MAX_DEAD_LETTER_BYTES) return 0;
  const tail = await readAt(target, complete, size - complete);
  for await (const line of readLines(legacy, MAX_DEAD_LETTER_BYTES)) {
    const bytes =
      line.undecodable ?? (line.text === undefined ? undefined : Buffer.from(line.text));
    if (bytes && bytes.length >= tail.length && bytes.subarray(0, tail.length).equals(tail))
      return tail.length;
  }
  return 0;
}

/**
 * The hashes of the lines of `file` (none when it does not exist), and where its last complete
 * line ends.
 */
async function lineHashes(file: string): Promise<{ hashes: Set<string>; end: number }> {
  const hashes = new Set<string>();
  let end = 0;
  if (!(await exists(file))) return { hashes, end };
  for await (const line of readLines(file, MAX_DEAD_LETTER_BYTES)) {
    const hash = lineHash(line);
    if (hash !== undefined) hashes.add(hash);
    end = line.offset + line.bytes + 1;
  }
  return { hashes, end };
}

/** `bytes` bytes of `handle` at `offset`. */
async function readAt(handle: FileHandle, offset: number, bytes: number): Promise<Buffer> {
  const buffer = Buffer.alloc(bytes);
  for (let done = 0; done < bytes;) {
    const { bytesRead } = await handle.read(buffer, done, bytes - done, offset + done);
    if (bytesRead === 0) return buffer.subarray(0, done);
    done += bytesRead;
  }
  return buffer;
}
