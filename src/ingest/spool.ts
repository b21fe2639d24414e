import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger';
import type { StatusEvent } from '../messages/status-event';
import { acquireInstanceLock } from '../process/instance-lock';
import type { InstanceLock } from '../process/instance-lock';
import { decodeSpoolLine, encodeSpoolLine } from './spool-codec';

/**
 * The outage spool: a durable, ordered local queue of accepted events for when PostgreSQL is
 * unreachable. SignalWire tries a callback at most three times within seconds, so during an
 * outage the only way not to lose it is to make it durable somewhere else and acknowledge.
 *
 * Layout: `SPOOL_DIR/spool-<20-digit number>.jsonl`, one event per line (spool-codec.ts).
 * Segments are written in number order and replayed in the same order, so events reach
 * PostgreSQL in arrival order. An append resolves only after `fdatasync`; appends that queue
 * up while a write is under way share the next write and sync (group fsync). A segment file
 * is deleted only after every one of its events is committed.
 *
 * Exactly once: replay may commit a chunk and then fail (or crash) before the segment is
 * deleted, so the same events can be replayed again. That is harmless because history rows
 * are unique on their dedupe key (message id, raw status, error code, provider timestamp):
 * a second insert is a no-op. The key deliberately leaves out `source`.
 *
 * One process per SPOOL_DIR, enforced: opening the spool takes the directory's instance lock
 * (process/instance-lock.ts) and a second process is refused, naming the holder; a crashed
 * holder leaves nothing stuck. Whichever process opens the directory next — the restarted
 * container, the pod that gets the volume, `npm run spool -- replay DIR` — replays what is
 * in it. In Kubernetes that is a persistent volume per pod (a StatefulSet's claim).
 *
 * Dead letters (`dead-letters.jsonl`): events PostgreSQL refuses for good and unreadable
 * lines, each with why; counted (`deadLetters()`, metric, readiness) and put back into the
 * spool by `requeueDeadLetters()` once the cause is fixed.
 */
export interface Spool {
  readonly dir: string;
  /** Appends events durably (fdatasync'd); rejects when the disk refuses. */
  append(events: readonly StatusEvent[]): Promise<void>;
  /** Events in the spool, from this process or an earlier one, not yet replayed. */
  depth(): number;
  /** Nothing spooled and no append under way: safe to write straight to PostgreSQL again. */
  isEmpty(): boolean;
  /** The last write failed (disk full, read-only, …) and none has succeeded since. */
  failing(): boolean;
  /**
   * Replays every segment closed so far, oldest first, in chunks through `commit`, deleting
   * each segment once all its events are committed. Stops at the first error of `commit`
   * (rethrown), leaving that segment and the later ones in place. Appends made during a
   * replay go to a new segment: call again until `isEmpty()`.
   */
  replay(commit: (events: StatusEvent[]) => Promise<void>, chunkSize: number): Promise<number>;
  /** Keeps an event that PostgreSQL refuses for good (never silently dropped), with why. */
  deadLetter(event: StatusEvent, reason: string): Promise<void>;
  /** Records in the dead-letter file. */
  deadLetters(): number;
  /**
   * Appends every dead-lettered event back to the spool (to be replayed like any other) and
   * keeps only what cannot be read in the dead-letter file.
   */
  requeueDeadLetters(): Promise<{ requeued: number; kept: number }>;
  /** This process's hold on the directory (it answers other processes' requests). */
  readonly lock: InstanceLock;
  /** Finishes pending appends, closes the open segment and releases the directory. */
  close(): Promise<void>;
}

export interface SpoolOptions {
  dir: string;
  logger: Logger;
  /** Events per segment file: bounds the memory a replay needs for one segment. */
  segmentMaxEvents?: number;
  /** Who holds the directory, for a process refused it (`npm start`, `spool replay`, …). */
  command?: string;
  /** More for that process to know (the ports this one listens on, …). */
  details?: Readonly<Record<string, unknown>>;
}

const SEGMENT_NAME = /^spool-(\d{20})\.jsonl$/;
export const DEAD_LETTER_FILE = 'dead-letters.jsonl';

interface Segment {
  id: number;
  file: string;
  events: number;
}

interface OpenSegment extends Segment {
  handle: FileHandle;
}

interface PendingAppend {
  data: string;
  count: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export async function openSpool(options: SpoolOptions): Promise<Spool> {
  const { logger } = options;
  const dir = path.resolve(options.dir);
  const segmentMaxEvents = options.segmentMaxEvents ?? 10_000;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Before anything is read: the segments belong to whoever holds the directory.
  const lock = await acquireInstanceLock({
    dir,
    command: options.command ?? 'sw-status',
    details: options.details,
  });
  try {
    return await openLocked(dir, lock, logger, segmentMaxEvents);
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function openLocked(
  dir: string,
  lock: InstanceLock,
  logger: Logger,
  segmentMaxEvents: number,
): Promise<Spool> {
  const deadLetterFile = path.join(dir, DEAD_LETTER_FILE);
  let deadLetters = countLines(await readFile(deadLetterFile).catch(() => Buffer.alloc(0)));
  if (deadLetters > 0) {
    logger.warn(
      { dir, dead_letters: deadLetters },
      'the spool holds dead letters: fix their cause, then requeue them (npm run spool -- requeue-dead-letters)',
    );
  }

  // Segments left by an earlier process (a crash, or a shutdown while the database was down).
  const closed: Segment[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const match = SEGMENT_NAME.exec(name);
    if (!match) continue;
    const file = path.join(dir, name);
    closed.push({ id: Number(match[1]), file, events: countLines(await readFile(file)) });
  }
  let nextId = (closed.at(-1)?.id ?? 0) + 1;
  let depth = closed.reduce((sum, segment) => sum + segment.events, 0);
  if (closed.length > 0)
    logger.warn({ dir, segments: closed.length, depth }, 'spool holds events from an earlier run');

  let current: OpenSegment | null = null;
  let pending: PendingAppend[] = [];
  let eventsBeingWritten = 0;
  let sealWaiters: Array<() => void> = [];
  let pumping = false;
  let lastWriteFailed = false;
  let replaying = false;

  async function syncDir(): Promise<void> {
    // A new or deleted file is durable only once its directory entry is.
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async function openSegment(): Promise<OpenSegment> {
    if (current) return current;
    const id = nextId++;
    const file = path.join(dir, `spool-${String(id).padStart(20, '0')}.jsonl`);
    const handle = await open(file, 'a', 0o600);
    current = { id, file, events: 0, handle };
    await syncDir();
    return current;
  }

  async function closeSegment(): Promise<void> {
    const segment = current;
    if (!segment) return;
    current = null;
    // After a failed write the file may hold complete lines that were never acknowledged;
    // replaying them is harmless (dedupe), losing them is not.
    const keep = segment.events > 0 || lastWriteFailed;
    // Listed as closed before the first await: in between, the spool must never look empty.
    if (keep) closed.push({ id: segment.id, file: segment.file, events: segment.events });
    await segment.handle.close().catch(() => undefined);
    if (!keep) await unlink(segment.file).catch(() => undefined);
  }

  async function writeGroup(group: PendingAppend[]): Promise<void> {
    const count = group.reduce((sum, append) => sum + append.count, 0);
    eventsBeingWritten += count;
    try {
      const segment = await openSegment();
      const buffer = Buffer.from(group.map((append) => append.data).join(''), 'utf8');
      for (let offset = 0; offset < buffer.length;) {
        const { bytesWritten } = await segment.handle.write(buffer, offset);
        offset += bytesWritten;
      }
      await segment.handle.datasync();
      segment.events += count;
      depth += count;
      lastWriteFailed = false;
      for (const append of group) append.resolve();
      if (segment.events >= segmentMaxEvents) await closeSegment();
    } catch (error) {
      lastWriteFailed = true;
      logger.error({ err: error, dir }, 'spool write failed');
      // A partly written line must never be followed by more lines: start a new segment.
      await closeSegment();
      for (const append of group) append.reject(error);
    } finally {
      eventsBeingWritten -= count;
    }
  }

  async function pump(): Promise<void> {
    if (pumping) return;
    pumping = true;
    try {
      while (pending.length > 0 || sealWaiters.length > 0) {
        if (pending.length > 0) {
          const group = pending;
          pending = [];
          await writeGroup(group);
        }
        if (sealWaiters.length > 0) {
          const waiters = sealWaiters;
          sealWaiters = [];
          await closeSegment();
          for (const resolve of waiters) resolve();
        }
      }
    } finally {
      pumping = false;
    }
  }

  /** Closes the open segment so that everything appended so far becomes replayable. */
  function seal(): Promise<void> {
    return new Promise((resolve) => {
      sealWaiters.push(resolve);
      void pump();
    });
  }

  async function appendDeadLetter(record: Record<string, unknown>): Promise<void> {
    const handle = await open(deadLetterFile, 'a', 0o600);
    try {
      await handle.write(
        `${JSON.stringify({ rejected_at: new Date().toISOString(), ...record })}\n`,
      );
      await handle.datasync();
    } finally {
      await handle.close();
    }
    deadLetters++;
  }

  let requeueing: Promise<{ requeued: number; kept: number }> | undefined;
  async function requeue(): Promise<{ requeued: number; kept: number }> {
    const content = await readFile(deadLetterFile, 'utf8').catch(() => '');
    const events: StatusEvent[] = [];
    const kept: string[] = [];
    for (const line of content.split('\n')) {
      if (line.length === 0) continue;
      const event = deadLetterEvent(line);
      if (event) events.push(event);
      else kept.push(line);
    }
    if (events.length === 0) return { requeued: 0, kept: kept.length };
    // Into the spool first, durably; only then out of the dead-letter file. A crash between
    // the two replays an event twice, which dedupe makes harmless.
    await spool.append(events);
    const temporary = `${deadLetterFile}.tmp`;
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.write(kept.map((line) => `${line}\n`).join(''));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temporary, deadLetterFile);
    await syncDir();
    deadLetters = kept.length;
    logger.info({ dir, requeued: events.length, kept: kept.length }, 'dead letters requeued');
    return { requeued: events.length, kept: kept.length };
  }

  const spool: Spool = {
    dir,
    lock,
    append(events) {
      if (events.length === 0) return Promise.resolve();
      return new Promise((resolve, reject) => {
        pending.push({
          data: events.map(encodeSpoolLine).join(''),
          count: events.length,
          resolve,
          reject,
        });
        void pump();
      });
    },
    depth: () => depth,
    isEmpty: () =>
      closed.length === 0 &&
      (current === null || current.events === 0) &&
      pending.length === 0 &&
      eventsBeingWritten === 0,
    failing: () => lastWriteFailed,
    async replay(commit, chunkSize) {
      if (replaying) throw new Error('spool replay already running');
      replaying = true;
      try {
        await seal();
        let replayed = 0;
        for (let segment = closed[0]; segment; segment = closed[0]) {
          const { events, corrupt } = readSegment(await readFile(segment.file, 'utf8'));
          for (let start = 0; start < events.length; start += chunkSize) {
            await commit(events.slice(start, start + chunkSize));
          }
          // Only now, with every readable event committed: a failure above replays it again.
          for (const line of corrupt) {
            logger.error(
              { file: segment.file },
              'spool line unreadable: kept in the dead-letter file',
            );
            await appendDeadLetter({
              reason: 'unreadable spool line',
              segment: path.basename(segment.file),
              line,
            });
          }
          await unlink(segment.file);
          await syncDir();
          closed.shift();
          depth -= segment.events;
          replayed += events.length;
        }
        return replayed;
      } finally {
        replaying = false;
      }
    },
    deadLetter: (event, reason) => appendDeadLetter({ reason, event }),
    deadLetters: () => deadLetters,
    requeueDeadLetters() {
      // One at a time: two would append the same events twice.
      requeueing ??= requeue().finally(() => {
        requeueing = undefined;
      });
      return requeueing;
    },
    async close() {
      await seal();
      await lock.release();
    },
  };
  return spool;
}

/** The event of a dead-letter record (or of an unreadable line a newer codec can now read). */
function deadLetterEvent(line: string): StatusEvent | undefined {
  let record: { event?: unknown; line?: unknown };
  try {
    record = JSON.parse(line) as typeof record;
  } catch {
    return undefined;
  }
  if (record.event !== undefined)
    return decodeSpoolLine(JSON.stringify({ v: 1, event: record.event }));
  return typeof record.line === 'string' ? decodeSpoolLine(record.line) : undefined;
}

function countLines(content: Buffer): number {
  let lines = 0;
  for (let index = content.indexOf(10); index !== -1; index = content.indexOf(10, index + 1))
    lines++;
  return lines;
}

/**
 * Every complete line's event. A last line without its newline is a write torn by a crash:
 * its append never returned, so it was never acknowledged, and it is skipped.
 */
function readSegment(content: string): { events: StatusEvent[]; corrupt: string[] } {
  const lines = content.split('\n');
  lines.pop(); // "" after the final newline, or the torn tail
  const events: StatusEvent[] = [];
  const corrupt: string[] = [];
  for (const line of lines) {
    if (line.length === 0) continue;
    const event = decodeSpoolLine(line);
    if (event) events.push(event);
    else corrupt.push(line);
  }
  return { events, corrupt };
}
