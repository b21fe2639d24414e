import { lstat, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { errorCode } from '../db/failure-reason';
import type { Logger } from '../logger';
import type { StatusEvent } from '../messages/status-event';
import { acquireInstanceLock } from '../process/instance-lock';
import type { InstanceLock } from '../process/instance-lock';
import { decodeSpoolLine, encodeSpoolLine } from './spool-codec';
import { openDeadLetters } from './spool-dead-letters';
import {
  MAX_LINE_BYTES,
  inChunks,
  isLackOfSpace,
  markDiskFailure,
  syncDirectory,
  writeAll,
} from './spool-files';
import { legacyDeadLetters } from './spool-legacy';
import { countLines, readLines } from './spool-lines';
import type { SpoolLine } from './spool-lines';

export { DEAD_LETTER_FILE } from './spool-dead-letters';
export { isSpoolDiskFailure } from './spool-files';

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
 *
 * A segment the file system will not let us read (EIO from a bad block, a directory or other
 * non-file under a segment's name) is a disk problem, not a database one, and must not stop the
 * segments after it nor the service: it is set aside as `unreadable-<its name>` in SPOOL_DIR —
 * kept on disk for an operator (README, "The outage spool"), counted with the dead letters —
 * and the replay goes on.
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
  /**
   * What waits for an operator: records in the dead-letter file, and segments set aside because
   * they could not be read (`unreadable-spool-…` in the directory, counted when the spool opens,
   * sets one aside or requeues).
   */
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
// A segment set aside unreadable: a name SEGMENT_NAME does not match, so nothing replays it.
const SET_ASIDE_PREFIX = 'unreadable-';
const SET_ASIDE_NAME = /^unreadable-spool-\d{20}\.jsonl(\.\d+)?$/;

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
  const legacy = legacyDeadLetters(dir, logger);
  const deadLetters = await openDeadLetters({
    dir,
    logger,
    legacy,
    append: (events) => spool.append(events),
    beforeRequeue: async () => {
      // An operator who recovered a set-aside segment removes it, then requeues: counted afresh.
      setAside = await countSetAside(dir).catch(() => setAside);
    },
  });
  let setAside = await countSetAside(dir);
  // Unreadable segments not even renamable: skipped by this process, still counted.
  let leftInPlace = 0;
  if (deadLetters.count() > 0) {
    logger.warn(
      { dir, dead_letters: deadLetters.count() },
      // The production image has no npm: name the command as it runs there.
      'the spool holds dead letters: fix their cause, then requeue them (node dist/ingest/spool-cli.js requeue-dead-letters; from a checkout: npm run spool -- requeue-dead-letters)',
    );
  }
  if (setAside > 0) {
    logger.error(
      { dir, unreadable_segments: setAside },
      'the spool holds segments set aside because the disk could not read them (unreadable-spool-…): recover their events by hand (README, "The outage spool")',
    );
  }

  // Segments left by an earlier process (a crash, or a shutdown while the database was down).
  const closed: Segment[] = [];
  let highestId = 0;
  for (const name of (await readdir(dir)).sort()) {
    const match = SEGMENT_NAME.exec(name);
    if (!match) continue;
    const id = Number(match[1]);
    // Past every segment name seen, an unreadable one included: a new segment must never be
    // opened on a name that one still takes when it could not be renamed aside.
    highestId = Math.max(highestId, id);
    const file = path.join(dir, name);
    let events: number;
    try {
      events = await countSegmentLines(file);
    } catch (error) {
      if (!(error instanceof UnreadableSegmentError)) throw error;
      await setSegmentAside(file, error);
      continue;
    }
    closed.push({ id, file, events });
  }
  let nextId = highestId + 1;
  let depth = closed.reduce((sum, segment) => sum + segment.events, 0);
  if (closed.length > 0)
    logger.warn({ dir, segments: closed.length, depth }, 'spool holds events from an earlier run');

  /**
   * Moves an unreadable segment out of the replay's way, keeping it for an operator. When even
   * the rename fails it stays under its own name and this process leaves it alone (the next
   * start tries again): retrying it on every pass would spin the replay and keep the spool from
   * ever being empty, holding every callback in the outage mode.
   */
  async function setSegmentAside(file: string, error: UnreadableSegmentError): Promise<void> {
    const name = path.basename(file);
    const fields = { file, code: errorCode(error.cause), err: error.cause };
    try {
      const target = await freeName(dir, `${SET_ASIDE_PREFIX}${name}`);
      await rename(file, target);
      // Best effort: lost in a crash, the segment is found and set aside again.
      await syncDirectory(dir).catch(() => undefined);
      setAside++;
      logger.error(
        { ...fields, set_aside_as: target },
        'spool segment unreadable: a disk problem, not the database; set aside for an operator (its events are not replayed until recovered, see README "The outage spool") and the replay goes on with the next segment',
      );
    } catch (renameError) {
      leftInPlace++;
      logger.error(
        { ...fields, rename_error: errorCode(renameError) },
        'spool segment unreadable: a disk problem, not the database; it could not even be renamed, so it stays under its name and this process skips it (the next start tries again)',
      );
    }
  }

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
        // The seals asked for so far, taken with the appends made before them: a seal asked
        // for while a group was being written closes the segment only once those are written
        // too. Closed before, they went to the next segment, outside the replay pass that
        // sealed — the catch-up's last pass then ended with them spooled, not direct.
        const waiters = sealWaiters;
        sealWaiters = [];
        if (pending.length > 0) {
          const group = pending;
          pending = [];
          await writeGroup(group);
        }
        if (waiters.length > 0) {
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

  /**
   * Reads a segment's lines in order and commits their events in chunks; returns how many it
   * committed and how many lines it could not read. Rethrows the first error of `commit`; a
   * segment the file system will not read fails with UnreadableSegmentError.
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
    if (!(await segmentExists(segment.file))) {
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
    for await (const line of segmentLines(segment.file)) {
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
   * would hold memory without bound. Once per line: a dead-letter write refused part-way (a
   * full disk) fails the pass, and the next pass must not write the lines before it again.
   */
  async function deadLetterUnreadable(segment: Segment): Promise<void> {
    for await (const line of segmentLines(segment.file)) {
      if (line.bytes === 0) continue;
      if (line.text !== undefined && decodeSpoolLine(line.text)) continue;
      await deadLetters.unreadableLine(segment.file, line);
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
      // Tells the database's failures (what `commit` throws) from the spool's own disk's.
      let commitFailure: unknown;
      const tracked = async (events: StatusEvent[]): Promise<readonly number[] | void> => {
        try {
          return await commit(events);
        } catch (error) {
          commitFailure = error;
          throw error;
        }
      };
      // A dead letter of an unreadable line the full volume had no room for: its segment is
      // kept and the pass goes on (the later segments' removal frees room); the pass then
      // fails with it, so the next try comes after the recorder's probe, not at once.
      let noRoom: unknown;
      try {
        await seal();
        let replayed = 0;
        // Segments closed during the pass (appends filling one) are replayed in it too.
        for (let index = 0; index < closed.length;) {
          const segment = closed[index]!;
          try {
            const { committed, unreadable, deferred } = await replaySegment(
              segment,
              tracked,
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
            if (hasUnreadable) {
              try {
                await deadLetterUnreadable(segment);
              } catch (error) {
                if (!isLackOfSpace(error)) throw error;
                // Nothing of it is left to store: only its unreadable lines wait for room.
                segment.kept = { lines: new Set(), unreadable: true };
                noRoom ??= error;
                index++;
                continue;
              }
            }
            await removeReplayed(segment.file);
            segment.removed = true;
            await syncRemoval(dir);
          } catch (error) {
            if (!(error instanceof UnreadableSegmentError)) {
              if (error !== commitFailure) markDiskFailure(error);
              throw error;
            }
            // What it held that was committed stays committed; the rest waits in the file.
            await setSegmentAside(segment.file, error);
          }
          closed.splice(index, 1);
          depth -= segment.events;
        }
        if (noRoom !== undefined) {
          markDiskFailure(noRoom);
          throw noRoom;
        }
        return replayed;
      } finally {
        replaying = false;
      }
    },
    deadLetter: deadLetters.deadLetter,
    deadLetters: () => deadLetters.count() + setAside + leftInPlace,
    requeueDeadLetters: deadLetters.requeue,
    async close() {
      clearInterval(probeTimer);
      probeTimer = undefined;
      await seal();
      await lock.release();
    },
  };
  return spool;
}

/** A segment that exists but that the file system will not let us read as a file. */
class UnreadableSegmentError extends Error {
  constructor(
    readonly file: string,
    override readonly cause: unknown,
  ) {
    super(`spool segment ${file} cannot be read (${errorCode(cause) ?? String(cause)})`);
    this.name = 'UnreadableSegmentError';
  }
}

/**
 * The errors that say a segment itself is damaged — a bad block (EIO), a directory or another
 * non-file in its place — and will be as damaged on the next pass. Anything else (EMFILE and
 * ENFILE when a callback flood has every file handle open, EAGAIN, ENOMEM, EACCES, …) may pass:
 * it fails the pass, which the next probe tries again, and never sets acknowledged callbacks
 * aside.
 */
const SEGMENT_DAMAGE = new Set(['EIO', 'EISDIR', 'EINVAL', 'ENXIO']);

/** `error` as UnreadableSegmentError when it says the segment is damaged; otherwise as it is. */
function segmentFailure(file: string, error: unknown): unknown {
  return SEGMENT_DAMAGE.has(errorCode(error) ?? '')
    ? new UnreadableSegmentError(file, error)
    : error;
}

/**
 * Whether the segment is still there. Gone (ENOENT) is answered, as before (replaySegment);
 * damage — stat failing with EIO, a directory or another non-file in its place, which opening
 * would fail on or, for a FIFO, block on — makes it unreadable.
 */
async function segmentExists(file: string): Promise<boolean> {
  let info;
  try {
    info = await stat(file);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw segmentFailure(file, error);
  }
  if (!info.isFile()) {
    const kind = info.isDirectory() ? 'a directory' : 'not a regular file';
    throw new UnreadableSegmentError(
      file,
      Object.assign(new Error(`${file} is ${kind}, not a spool segment`), {
        code: info.isDirectory() ? 'EISDIR' : 'EINVAL',
      }),
    );
  }
  return true;
}

/** The segment's lines; damage found opening or reading it is UnreadableSegmentError. */
async function* segmentLines(file: string): AsyncGenerator<SpoolLine, void, undefined> {
  const lines = readLines(file, MAX_LINE_BYTES);
  try {
    for (;;) {
      let next: IteratorResult<SpoolLine, void>;
      try {
        next = await lines.next();
      } catch (error) {
        throw segmentFailure(file, error);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // The consumer stopped early (a commit failed): close the file all the same.
    await lines.return(undefined).catch(() => undefined);
  }
}

/**
 * A segment's events, counted at start-up; a damaged one is UnreadableSegmentError. One
 * gone meanwhile (ENOENT) fails the start as it always did: with the directory locked, only
 * someone clearing SPOOL_DIR by hand does that.
 */
async function countSegmentLines(file: string): Promise<number> {
  if (!(await segmentExists(file))) throw enoent(file);
  try {
    return await countLines(file);
  } catch (error) {
    throw segmentFailure(file, error);
  }
}

function enoent(file: string): Error {
  return Object.assign(new Error(`ENOENT: ${file} vanished`), { code: 'ENOENT' });
}

/** `name` in `dir`, or `name.1`, `name.2`, … when taken: a rename must never replace a file. */
async function freeName(dir: string, name: string): Promise<string> {
  for (let suffix = 0; ; suffix++) {
    const candidate = path.join(dir, suffix === 0 ? name : `${name}.${suffix}`);
    try {
      await lstat(candidate);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return candidate;
      throw error;
    }
  }
}

async function countSetAside(dir: string): Promise<number> {
  return (await readdir(dir)).filter((name) => SET_ASIDE_NAME.test(name)).length;
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
