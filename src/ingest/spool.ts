import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger';
import { dedupeKey } from '../messages/status-event';
import type { StatusEvent } from '../messages/status-event';
import { acquireInstanceLock } from '../process/instance-lock';
import type { InstanceLock } from '../process/instance-lock';
import { decodeSpoolLine, encodeSpoolLine } from './spool-codec';
import { countLines, readLines } from './spool-lines';

/**
 * The outage spool: a durable, ordered local queue of accepted events for when PostgreSQL is
 * unreachable. SignalWire tries a callback at most three times within seconds, so during an
 * outage the only way not to lose it is to make it durable somewhere else and acknowledge.
 *
 * Layout: `SPOOL_DIR/spool-<20-digit number>.jsonl`, one event per line (spool-codec.ts).
 * Segments are written in number order and replayed in the same order, so events reach
 * PostgreSQL in arrival order — per message, when a message's row is locked elsewhere (its
 * events wait for a later pass while others go on; see `replay`). An append resolves only
 * after `fdatasync`; appends that queue up while a write is under way share the next write and
 * sync (group fsync). A segment is closed at `segmentMaxEvents` events or `segmentMaxBytes`
 * bytes, whichever comes first, and replayed as a stream of lines (spool-lines.ts), so neither
 * its size nor that of its lines decides whether it can be replayed. A segment file is deleted
 * only after every one of its events is committed (or dead-lettered).
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
   * each segment once all its events are committed. `commit` may defer events (resolving with
   * their places in the chunk: their message is locked elsewhere, src/ingest/replay.ts): a
   * segment holding one is kept, and the next call replays only its deferred lines; the later
   * segments are replayed meanwhile. The next process on the directory replays a kept segment
   * whole (its stored events are then duplicates, which the store ignores). Stops at the first
   * error of `commit` (rethrown), leaving that segment and the later ones in place. Appends
   * made during a replay go to a new segment: call again until `isEmpty()`.
   */
  replay(
    commit: (events: StatusEvent[]) => Promise<readonly number[] | void>,
    chunkSize: number,
  ): Promise<number>;
  /**
   * Keeps an event that PostgreSQL refuses for good (never silently dropped), with why; once:
   * an event already in the dead-letter file (the same dedupe key) is not written again.
   */
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
  /** Events per segment file (default 10,000). */
  segmentMaxEvents?: number;
  /**
   * Bytes per segment file (default 64 MiB): a replay streams a segment whatever its size, but
   * a smaller file is deleted sooner, so a crash mid-replay replays less again.
   */
  segmentMaxBytes?: number;
  /** Who holds the directory, for a process refused it (`npm start`, `spool replay`, …). */
  command?: string;
  /** More for that process to know (the ports this one listens on, …). */
  details?: Readonly<Record<string, unknown>>;
  /** While failing, how often the spool tries a write of its own (default 5 s). */
  probeIntervalMs?: number;
}

/** The probe's file (no segment's name) and size: the most one callback can take. */
const PROBE_FILE = '.write-probe';
const PROBE_BYTES = 64 * 1024;

const SEGMENT_NAME = /^spool-(\d{20})\.jsonl$/;
export const DEAD_LETTER_FILE = 'dead-letters.jsonl';
// Its name in the first release (adoptLegacyDeadLetters).
const LEGACY_DEAD_LETTER_FILE = 'rejected.jsonl';
const NEWLINE = 0x0a;

// An event's line is at most a few hundred kB (a 64 KiB callback, its relay copy, escaping):
// a longer one was never written by an append, and is not held in memory to be decoded.
const MAX_LINE_BYTES = 16 * 1024 * 1024;
// A dead-letter record of an unreadable line holds that line JSON-escaped (up to 6 × longer).
const MAX_DEAD_LETTER_BYTES = 6 * MAX_LINE_BYTES + 4096;
// A replay transaction, or a requeue's append, holds at most this much of the spool (and at
// most `chunkSize`, or CHUNK_MAX_EVENTS, events): 500 callbacks of 64 KiB would be 75 MB of
// text, and again as much in decoded events and statement parameters.
const CHUNK_MAX_BYTES = 16 * 1024 * 1024;
const CHUNK_MAX_EVENTS = 500;

interface Segment {
  id: number;
  file: string;
  events: number;
  /**
   * Kept by a replay pass for events it deferred (their message locked elsewhere): their lines,
   * the only ones the next pass replays (the others are stored or dead-lettered), and whether
   * the file has unreadable lines, to be dead-lettered when it is deleted.
   */
  kept?: { lines: ReadonlySet<number>; unreadable: boolean };
  /** Removed by this process's replay (its directory's sync may still have to be done). */
  removed?: boolean;
}

interface OpenSegment extends Segment {
  handle: FileHandle;
  bytes: number;
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
  const limits = {
    events: options.segmentMaxEvents ?? 10_000,
    bytes: options.segmentMaxBytes ?? 64 * 1024 * 1024,
    probeIntervalMs: options.probeIntervalMs ?? 5_000,
  };
  // Only SPOOL_DIR itself is private (0700): the directories above it are made as any other
  // (`.data`, which the embedded PostgreSQL's data directory shares, must stay enterable by
  // the `postgres` user the server runs as under root).
  const createdAbove = await mkdir(path.dirname(dir), { recursive: true });
  const createdSelf = await mkdir(dir, { mode: 0o700 }).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') return false;
      throw error;
    },
  );
  const created = createdAbove ?? (createdSelf ? dir : undefined);
  // A directory mkdir created is an entry in its parent, durable only once the parent is
  // synced: until then a power loss can take SPOOL_DIR away with every segment acknowledged
  // in it (the segments' own entries are synced in SPOOL_DIR itself).
  if (created !== undefined) {
    const first = path.resolve(created);
    for (let child = dir; child !== path.dirname(child); child = path.dirname(child)) {
      await syncDirectory(path.dirname(child));
      if (child === first) break;
    }
  }
  // Before anything is read: the segments belong to whoever holds the directory.
  const lock = await acquireInstanceLock({
    dir,
    command: options.command ?? 'sw-status',
    details: options.details,
  });
  try {
    return await openLocked(dir, lock, logger, limits);
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function openLocked(
  dir: string,
  lock: InstanceLock,
  logger: Logger,
  limits: { events: number; bytes: number; probeIntervalMs: number },
): Promise<Spool> {
  const deadLetterFile = path.join(dir, DEAD_LETTER_FILE);
  await adoptLegacyDeadLetters(dir, deadLetterFile);
  let deadLetters = await countLines(deadLetterFile).catch(() => 0);
  if (deadLetters > 0) {
    logger.warn(
      { dir, dead_letters: deadLetters },
      // The production image has no npm: name the command as it runs there.
      'the spool holds dead letters: fix their cause, then requeue them (node dist/ingest/spool-cli.js requeue-dead-letters; from a checkout: npm run spool -- requeue-dead-letters)',
    );
  }

  // Segments left by an earlier process (a crash, or a shutdown while the database was down).
  const closed: Segment[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const match = SEGMENT_NAME.exec(name);
    if (!match) continue;
    const file = path.join(dir, name);
    closed.push({ id: Number(match[1]), file, events: await countLines(file) });
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
  let failedWrites = 0;
  let probeTimer: NodeJS.Timeout | undefined;
  let replaying = false;

  // A new or deleted file is durable only once its directory entry is.
  const syncDir = (): Promise<void> => syncDirectory(dir);

  async function openSegment(): Promise<OpenSegment> {
    if (current) return current;
    const id = nextId++;
    const file = path.join(dir, `spool-${String(id).padStart(20, '0')}.jsonl`);
    const handle = await open(file, 'a', 0o600);
    current = { id, file, events: 0, handle, bytes: 0 };
    await syncDir();
    return current;
  }

  /**
   * `written`: a failed write put bytes in the file. They may be complete lines that were never
   * acknowledged; replaying them is harmless (dedupe), losing them is not. A file nothing
   * reached is removed: a full disk would otherwise collect one empty segment per refusal.
   */
  async function closeSegment(written = false): Promise<void> {
    const segment = current;
    if (!segment) return;
    current = null;
    const keep = segment.events > 0 || written;
    // Listed as closed before the first await: in between, the spool must never look empty.
    if (keep) closed.push({ id: segment.id, file: segment.file, events: segment.events });
    await segment.handle.close().catch(() => undefined);
    if (!keep) await unlink(segment.file).catch(() => undefined);
  }

  async function writeGroup(group: PendingAppend[]): Promise<void> {
    const count = group.reduce((sum, append) => sum + append.count, 0);
    eventsBeingWritten += count;
    // Whether any byte of this group reached the file (a failed datasync: all of them may have).
    let written = false;
    try {
      const segment = await openSegment();
      const buffer = Buffer.from(group.map((append) => append.data).join(''), 'utf8');
      for (let offset = 0; offset < buffer.length;) {
        const { bytesWritten } = await segment.handle.write(buffer, offset);
        offset += bytesWritten;
        if (bytesWritten > 0) written = true;
      }
      await segment.handle.datasync();
      // Synced into a file no directory holds (SPOOL_DIR removed under the process): no
      // replay or restart would ever read it. Not durable, so not acknowledged.
      if ((await segment.handle.stat()).nlink === 0) {
        throw Object.assign(new Error(`spool segment ${segment.file} was removed while open`), {
          code: 'ENOENT',
        });
      }
      segment.events += count;
      segment.bytes += buffer.length;
      depth += count;
      writable();
      for (const append of group) append.resolve();
      if (segment.events >= limits.events || segment.bytes >= limits.bytes) await closeSegment();
    } catch (error) {
      failing();
      logger.error({ err: error, dir }, 'spool write failed');
      // A partly written line must never be followed by more lines: start a new segment.
      await closeSegment(written);
      for (const append of group) append.reject(error);
    } finally {
      eventsBeingWritten -= count;
    }
  }

  /**
   * A failed write leaves the spool failing, and a replica whose database is down too is then
   * not ready (src/http/health.routes.ts). Only a write could say the disk took bytes again —
   * and a replica out of the load balancer gets no callbacks to write: it would stay out for the
   * rest of the outage, and every replica with it after one full-disk episode. So while it is
   * failing the spool tries a write of its own, as large as a callback, now and then.
   */
  function failing(): void {
    lastWriteFailed = true;
    failedWrites += 1;
    probeTimer ??= setInterval(() => void probe(), limits.probeIntervalMs).unref();
  }

  function writable(): void {
    if (lastWriteFailed) logger.info({ dir }, 'spool writable again');
    lastWriteFailed = false;
    clearInterval(probeTimer);
    probeTimer = undefined;
  }

  async function probe(): Promise<void> {
    // A write under way says it itself; a failure during the probe outweighs its success.
    if (pumping) return;
    const failuresBefore = failedWrites;
    const file = path.join(dir, PROBE_FILE);
    try {
      const handle = await open(file, 'w', 0o600);
      try {
        await writeAll(handle, Buffer.alloc(PROBE_BYTES));
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await unlink(file);
      if (failedWrites === failuresBefore && lastWriteFailed) writable();
    } catch {
      await unlink(file).catch(() => undefined);
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

  // Dead-letter appends and requeues take turns: a requeue rewrites the file from what it read,
  // and a record appended meanwhile would be lost with the old file.
  let deadLetterTurn: Promise<unknown> = Promise.resolve();
  function inTurn<T>(work: () => Promise<T>): Promise<T> {
    const result = deadLetterTurn.then(work);
    deadLetterTurn = result.catch(() => undefined);
    return result;
  }

  function appendDeadLetter(record: Record<string, unknown>): Promise<void> {
    return inTurn(() => writeDeadLetter(record));
  }

  /**
   * The dedupe keys of the events in the dead-letter file, read from it at this process's first
   * dead letter. A replay stopped in the middle of a segment (a drain's deadline, a crash, the
   * database lost), or ended with a segment kept for a locked message, leaves the segment to be
   * replayed whole by the next pass or process: an event dead-lettered the first time would be
   * dead-lettered again, once per restart, and counted (metric, readiness) as many times. An
   * event whose key the file already holds is not written twice; the store would take only one
   * of them anyway (its dedupe key). One key per dead letter in memory, and dead letters are few.
   */
  let deadLetterKeys: Set<string> | undefined;
  async function deadLetteredKeys(): Promise<Set<string>> {
    if (deadLetterKeys) return deadLetterKeys;
    const keys = new Set<string>();
    if (await exists(deadLetterFile)) {
      for await (const line of readLines(deadLetterFile, MAX_DEAD_LETTER_BYTES)) {
        const event = line.text === undefined ? undefined : deadLetterEvent(line.text);
        if (event) keys.add(dedupeKey(event).toString('hex'));
      }
    }
    deadLetterKeys = keys;
    return keys;
  }

  function deadLetterEventOnce(event: StatusEvent, reason: string): Promise<void> {
    return inTurn(async () => {
      const keys = await deadLetteredKeys();
      const key = dedupeKey(event).toString('hex');
      if (keys.has(key)) {
        logger.info(
          { message_id: event.messageId },
          'replayed event already in the dead-letter file: not written again',
        );
        return;
      }
      await writeDeadLetter({ reason, event });
      keys.add(key);
    });
  }

  /**
   * Once it resolves, the record is whole on disk: its segment may then be removed, and the
   * record is the event's only copy. A nearly full disk (or the file-size limit) takes part of
   * a write without an error, so every byte is written or the write fails; a failed one is
   * cut off again, and a record torn by a crash stays a line of its own: appended to, either
   * would make the next record unreadable too.
   */
  async function writeDeadLetter(record: Record<string, unknown>): Promise<void> {
    // Read too: whether the last record ends with its newline.
    const handle = await open(deadLetterFile, 'a+', 0o600);
    try {
      const { size } = await handle.stat();
      const separator = size > 0 && !(await endsWithNewline(handle, size)) ? '\n' : '';
      const line = `${separator}${JSON.stringify({ rejected_at: new Date().toISOString(), ...record })}\n`;
      try {
        await writeAll(handle, Buffer.from(line, 'utf8'));
        await handle.datasync();
      } catch (error) {
        await handle.truncate(size).catch(() => undefined);
        throw error;
      }
    } finally {
      await handle.close();
    }
    deadLetters++;
  }

  let requeueing: Promise<{ requeued: number; kept: number }> | undefined;
  /**
   * Streams the dead-letter file: its events go back into the spool (durably, in chunks), the
   * records that still cannot be read are copied as they are into a new file, which then takes
   * the old one's place. A crash before that replays the requeued events twice, which dedupe
   * makes harmless; losing them would not be.
   */
  async function requeue(): Promise<{ requeued: number; kept: number }> {
    const temporary = `${deadLetterFile}.tmp`;
    let source: FileHandle;
    try {
      source = await open(deadLetterFile, 'r');
    } catch {
      return { requeued: 0, kept: 0 };
    }
    let result: { requeued: number; kept: number };
    try {
      result = await requeueFrom(source, temporary);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    } finally {
      await source.close();
    }
    if (result.requeued === 0) {
      await unlink(temporary).catch(() => undefined);
      return result;
    }
    await rename(temporary, deadLetterFile);
    await syncDir();
    deadLetters = result.kept;
    // What is left cannot be read: no event's key (the requeued ones may be refused again).
    deadLetterKeys = new Set();
    logger.info({ dir, ...result }, 'dead letters requeued');
    return result;
  }

  /** Appends the events of `source` to the spool and writes the other records to `target`. */
  async function requeueFrom(
    source: FileHandle,
    temporary: string,
  ): Promise<{ requeued: number; kept: number }> {
    let requeued = 0;
    let kept = 0;
    const target = await open(temporary, 'w', 0o600);
    try {
      const chunks = inChunks(CHUNK_MAX_EVENTS, async (events) => {
        await spool.append(events);
        requeued += events.length;
      });
      for await (const line of readLines(deadLetterFile, MAX_DEAD_LETTER_BYTES)) {
        if (line.bytes === 0) continue;
        const event = line.text === undefined ? undefined : deadLetterEvent(line.text);
        if (event) {
          await chunks.add(event, line.bytes);
        } else {
          await copyLine(source, target, line.offset, line.bytes);
          kept++;
        }
      }
      await chunks.end();
      // Durable before it takes the old file's place.
      await target.datasync();
    } finally {
      await target.close();
    }
    return { requeued, kept };
  }

  /**
   * Reads a segment's lines in order and commits their events in chunks; returns how many it
   * committed and how many lines it could not read. Rethrows the first error of `commit`.
   */
  async function replaySegment(
    segment: Segment,
    commit: (events: StatusEvent[]) => Promise<readonly number[] | void>,
    chunkSize: number,
  ): Promise<{ committed: number; unreadable: number; deferred: Set<number> }> {
    let committed = 0;
    let unreadable = 0;
    const deferred = new Set<number>();
    // Removed by an earlier replay whose directory sync then failed: it was replayed in full
    // (removal comes only after that), and failing on it would stop every later replay.
    if (segment.removed) return { committed, unreadable, deferred };
    if (!(await exists(segment.file))) {
      // Someone else removed it (SPOOL_DIR cleared under the process): nothing brings its
      // events back, and waiting for it would stop every later replay. Said loudly.
      logger.error(
        { file: segment.file, events: segment.events },
        'spool segment removed before it was replayed: its events are lost',
      );
      return { committed, unreadable, deferred };
    }
    // The line number of each event in the chunk being gathered.
    let lines: number[] = [];
    const chunks = inChunks(chunkSize, async (events) => {
      const chunkLines = lines;
      lines = [];
      const kept = (await commit(events)) ?? [];
      for (const position of kept) deferred.add(chunkLines[position]!);
      committed += events.length - kept.length;
    });
    let number = -1;
    for await (const line of readLines(segment.file, MAX_LINE_BYTES)) {
      number++;
      if (segment.kept && !segment.kept.lines.has(number)) continue;
      if (line.bytes === 0) continue;
      const event = line.text === undefined ? undefined : decodeSpoolLine(line.text);
      if (event) {
        lines.push(number);
        await chunks.add(event, line.bytes);
      } else unreadable++;
    }
    await chunks.end();
    return { committed, unreadable, deferred };
  }

  /**
   * Keeps a segment's unreadable lines in the dead-letter file. A second pass over the file,
   * taken only for a segment that has such lines: holding them until the segment is committed
   * would hold memory without bound.
   */
  async function deadLetterUnreadable(segment: Segment): Promise<void> {
    const name = path.basename(segment.file);
    for await (const line of readLines(segment.file, MAX_LINE_BYTES)) {
      if (line.bytes === 0) continue;
      if (line.text !== undefined && decodeSpoolLine(line.text)) continue;
      logger.error({ file: segment.file }, 'spool line unreadable: kept in the dead-letter file');
      await appendDeadLetter(
        line.text === undefined
          ? // Longer than any event an append writes: damage, not an acknowledged callback.
            {
              reason: `unreadable spool line of ${line.bytes} bytes, longer than any event`,
              segment: name,
              offset: line.offset,
            }
          : { reason: 'unreadable spool line', segment: name, line: line.text },
      );
    }
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
        // Segments closed during the pass (appends filling one) are replayed in it too.
        for (let index = 0; index < closed.length;) {
          const segment = closed[index]!;
          const { committed, unreadable, deferred } = await replaySegment(
            segment,
            commit,
            chunkSize,
          );
          replayed += committed;
          const hasUnreadable = unreadable > 0 || segment.kept?.unreadable === true;
          if (deferred.size > 0) {
            // Kept for the next pass: deleting it needs every one of its events stored.
            segment.kept = { lines: deferred, unreadable: hasUnreadable };
            index++;
            continue;
          }
          // Only now, with every readable event committed: a failure above replays it again.
          if (hasUnreadable) await deadLetterUnreadable(segment);
          await removeReplayed(segment.file);
          segment.removed = true;
          await syncRemoval(dir);
          closed.splice(index, 1);
          depth -= segment.events;
        }
        return replayed;
      } finally {
        replaying = false;
      }
    },
    deadLetter: deadLetterEventOnce,
    deadLetters: () => deadLetters,
    requeueDeadLetters() {
      // One at a time: two would append the same events twice.
      requeueing ??= inTurn(requeue).finally(() => {
        requeueing = undefined;
      });
      return requeueing;
    },
    async close() {
      clearInterval(probeTimer);
      probeTimer = undefined;
      await seal();
      await lock.release();
    },
  };
  return spool;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * A removal made durable: its directory synced. A directory that is itself gone (SPOOL_DIR
 * removed under the process) holds no entry to sync, so the removal is done: failing here would
 * fail every replay pass, keep the spool from ever being empty, and hold the replica in its
 * outage mode (every callback 503) after the database is back.
 */
async function syncRemoval(dir: string): Promise<void> {
  try {
    await syncDirectory(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** A replayed segment's file, removed; already gone counts (see replaySegment). */
async function removeReplayed(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The first release named the dead-letter file `rejected.jsonl` (same records): its dead
 * letters are acknowledged events too, so they join the current file — counted, visible and
 * requeued like the others — instead of lying unseen in the directory. Copied, synced, then
 * removed: a crash in between copies them twice, which a requeue's dedupe makes harmless.
 */
async function adoptLegacyDeadLetters(dir: string, deadLetterFile: string): Promise<void> {
  const legacy = path.join(dir, LEGACY_DEAD_LETTER_FILE);
  let source: FileHandle;
  try {
    source = await open(legacy, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    const target = await open(deadLetterFile, 'a', 0o600);
    try {
      const buffer = Buffer.allocUnsafe(1 << 20);
      let last = NEWLINE;
      for (let position = 0; ;) {
        const { bytesRead } = await source.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) break;
        await writeAll(target, buffer.subarray(0, bytesRead));
        last = buffer[bytesRead - 1]!;
        position += bytesRead;
      }
      // A torn last record stays one unreadable record, not the start of the next one.
      if (last !== NEWLINE) await writeAll(target, Buffer.from('\n'));
      await target.datasync();
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
  // The dead-letter file may be new: its entry first, then the old file's removal.
  await syncDirectory(dir);
  await unlink(legacy);
  await syncDirectory(dir);
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

/**
 * Gathers events into chunks of at most `maxEvents` events and CHUNK_MAX_BYTES of their lines,
 * handing each full chunk to `flush` as it fills, and what is left at `end()`.
 */
function inChunks(
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

/** Copies `bytes` bytes at `offset` of `source`, and a newline, to the end of `target`. */
async function copyLine(
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

async function endsWithNewline(handle: FileHandle, size: number): Promise<boolean> {
  const last = Buffer.alloc(1);
  const { bytesRead } = await handle.read(last, 0, 1, size - 1);
  return bytesRead === 1 && last[0] === NEWLINE;
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    const { bytesWritten } = await handle.write(data, offset);
    offset += bytesWritten;
  }
}
