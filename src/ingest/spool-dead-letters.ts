import { open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger';
import { dedupeKey } from '../messages/status-event';
import type { StatusEvent } from '../messages/status-event';
import { decodeSpoolLine } from './spool-codec';
import {
  CHUNK_MAX_EVENTS,
  MAX_LINE_BYTES,
  copyLine,
  endsWithNewline,
  exists,
  inChunks,
  lineHash,
  markDiskFailure,
  syncDirectory,
  writeAll,
} from './spool-files';
import type { LegacyDeadLetters } from './spool-legacy';
import { countLines, decodeUtf8, readLines } from './spool-lines';
import type { SpoolLine } from './spool-lines';

export const DEAD_LETTER_FILE = 'dead-letters.jsonl';
// A dead-letter record of an unreadable line holds that line JSON-escaped (up to 6 × longer).
export const MAX_DEAD_LETTER_BYTES = 6 * MAX_LINE_BYTES + 4096;

/**
 * The spool's dead-letter file (`dead-letters.jsonl` in its directory): events PostgreSQL
 * refuses for good and unreadable spool lines, each with why, until an operator requeues them.
 */
export interface DeadLetters {
  /** Records in the dead-letter file, and in the first release's not moved into it yet. */
  count(): number;
  /** Keeps an event PostgreSQL refuses for good, once (Spool's `deadLetter`). */
  deadLetter(event: StatusEvent, reason: string): Promise<void>;
  /** Keeps an unreadable line of the segment `file`, once. */
  unreadableLine(file: string, line: SpoolLine): Promise<void>;
  /** Puts every dead-lettered event back into the spool (Spool's `requeueDeadLetters`). */
  requeue(): Promise<{ requeued: number; kept: number }>;
}

export interface DeadLetterOptions {
  dir: string;
  logger: Logger;
  /** The first release's dead letters: adopted at the open and at each requeue. */
  legacy: LegacyDeadLetters;
  /** Appends requeued events to the spool, durably. */
  append(events: readonly StatusEvent[]): Promise<void>;
  /** Runs first in each requeue, in its turn. */
  beforeRequeue(): Promise<void>;
}

/** The dead-letter file of `dir`, the first release's dead letters adopted into it first. */
export async function openDeadLetters(options: DeadLetterOptions): Promise<DeadLetters> {
  const { dir, logger, legacy } = options;
  const deadLetterFile = path.join(dir, DEAD_LETTER_FILE);
  // Records in rejected.jsonl not adopted yet.
  let legacyRecords = await legacy.adopt();
  let deadLetterRecords = await countLines(deadLetterFile).catch(() => 0);

  // Dead-letter appends and requeues take turns: a requeue rewrites the file from what it read,
  // and a record appended meanwhile would be lost with the old file.
  let deadLetterTurn: Promise<unknown> = Promise.resolve();
  function inTurn<T>(work: () => Promise<T>): Promise<T> {
    const result = deadLetterTurn.then(work);
    deadLetterTurn = result.catch(() => undefined);
    return result;
  }

  /**
   * The keys of what the dead-letter file holds, read from it at this process's first dead
   * letter: each event's dedupe key, and each unreadable line's place (unreadableLineKey). A
   * replay stopped in the middle of a segment (a drain's deadline, a crash, the database lost,
   * a dead-letter write refused by a full disk), or ended with a segment kept for a locked
   * message, leaves the segment to be replayed whole by the next pass or process: what was
   * dead-lettered the first time would be dead-lettered again, once per pass or restart, and
   * counted (metric, readiness) as many times. What the file already holds is not written
   * twice; the store would take only one of each event anyway (its dedupe key). One key per
   * dead letter in memory, and dead letters are few.
   */
  let deadLetterKeys: Set<string> | undefined;
  async function deadLetteredKeys(): Promise<Set<string>> {
    if (deadLetterKeys) return deadLetterKeys;
    const keys = new Set<string>();
    if (await exists(deadLetterFile)) {
      for await (const line of readLines(deadLetterFile, MAX_DEAD_LETTER_BYTES)) {
        const key = line.text === undefined ? undefined : deadLetterKey(line.text);
        if (key) keys.add(key);
      }
    }
    deadLetterKeys = keys;
    return keys;
  }

  function deadLetterEventOnce(event: StatusEvent, reason: string): Promise<void> {
    return inTurn(async () => {
      // Called from within the replay's `commit`, whose errors are taken for the database's:
      // whatever fails here is the spool's own disk (creating the file on a full volume, reading
      // its keys, the write), and is marked so — not reported as the database unreachable.
      try {
        const keys = await deadLetteredKeys();
        const key = eventKey(event);
        if (keys.has(key)) {
          logger.info(
            { message_id: event.messageId },
            'replayed event already in the dead-letter file: not written again',
          );
          return;
        }
        await writeDeadLetter({ reason, event });
        keys.add(key);
      } catch (error) {
        markDiskFailure(error);
        throw error;
      }
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
    deadLetterRecords++;
  }

  /**
   * Streams the dead-letter file: its events go back into the spool (durably, in chunks), the
   * records that still cannot be read are copied as they are into a new file, which then takes
   * the old one's place. A crash before that replays the requeued events twice, which dedupe
   * makes harmless; losing them would not be.
   */
  async function requeueAll(): Promise<{ requeued: number; kept: number }> {
    await options.beforeRequeue();
    // Not adopted at the open (a full volume, since drained): requeued with the others.
    legacyRecords = await legacy.adopt();
    if (legacy.notRemoved()) {
      throw new Error(
        `${legacy.file} is copied into ${DEAD_LETTER_FILE} but could not be removed: remove it, then requeue (requeued now, its records would be adopted and requeued again at the next start)`,
      );
    }
    deadLetterRecords = await countLines(deadLetterFile).catch(() => deadLetterRecords);
    deadLetterKeys = undefined;
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
    await syncDirectory(dir);
    deadLetterRecords = result.kept;
    // Read again from the new file at the next dead letter: the requeued events' keys are gone
    // (they may be refused again), the kept unreadable lines' keys stay.
    deadLetterKeys = undefined;
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
        await options.append(events);
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

  /** An unreadable line of the segment `file`, kept unless the dead-letter file holds it. */
  function unreadableLineOnce(file: string, line: SpoolLine): Promise<void> {
    const name = path.basename(file);
    return inTurn(async () => {
      const keys = await deadLetteredKeys();
      const key = unreadableLineKey(name, line);
      // A line not UTF-8 that a build before `line_base64` kept: as its text with U+FFFD for
      // each bad byte, keyed on that text's hash.
      const lossyKey =
        line.undecodable &&
        unreadableLineKey(name, {
          ...line,
          text: line.undecodable.toString('utf8'),
          undecodable: undefined,
        });
      if (keys.has(key) || (lossyKey && keys.has(lossyKey))) return;
      await writeDeadLetter(unreadableLineRecord(name, line));
      keys.add(key);
      // Said once written: a write refused (a full volume) is tried again at the next pass.
      logger.error({ file }, 'spool line unreadable: kept in the dead-letter file');
    });
  }

  let requeueing: Promise<{ requeued: number; kept: number }> | undefined;
  return {
    count: () => deadLetterRecords + legacyRecords,
    deadLetter: deadLetterEventOnce,
    unreadableLine: unreadableLineOnce,
    requeue() {
      // One at a time: two would append the same events twice.
      requeueing ??= inTurn(requeueAll).finally(() => {
        requeueing = undefined;
      });
      return requeueing;
    },
  };
}

/** An event's dead-letter key: its dedupe key, as the store's. */
function eventKey(event: StatusEvent): string {
  return dedupeKey(event).toString('hex');
}

/**
 * An unreadable line's dead-letter key: its segment, its offset, and its bytes' hash (or its
 * length when too long to hold). The hash because a segment's name comes back once the spool
 * has drained (numbering starts again at 1): a different damaged line at the same place of a
 * later segment must still be kept.
 */
function unreadableLineKey(segment: string, line: SpoolLine): string {
  return `line:${segment}:${line.offset}:${lineHash(line) ?? line.bytes}`;
}

/** The key of a dead-letter record (deadLetteredKeys), if it is an event or a located line. */
function deadLetterKey(text: string): string | undefined {
  const event = deadLetterEvent(text);
  if (event) return eventKey(event);
  let record: {
    segment?: unknown;
    offset?: unknown;
    line?: unknown;
    line_base64?: unknown;
    bytes?: unknown;
  };
  try {
    record = JSON.parse(text) as typeof record;
  } catch {
    return undefined;
  }
  if (typeof record.segment !== 'string' || typeof record.offset !== 'number') return undefined;
  if (typeof record.line === 'string') {
    return unreadableLineKey(record.segment, {
      offset: record.offset,
      bytes: Buffer.byteLength(record.line),
      text: record.line,
    });
  }
  if (typeof record.line_base64 === 'string') {
    const undecodable = Buffer.from(record.line_base64, 'base64');
    return unreadableLineKey(record.segment, {
      offset: record.offset,
      bytes: undecodable.length,
      text: undefined,
      undecodable,
    });
  }
  if (typeof record.bytes !== 'number') return undefined;
  return unreadableLineKey(record.segment, {
    offset: record.offset,
    bytes: record.bytes,
    text: undefined,
  });
}

/** The dead-letter record of an unreadable line of `segment`: all of it that can be kept. */
function unreadableLineRecord(segment: string, line: SpoolLine): Record<string, unknown> {
  const where = { segment, offset: line.offset };
  // Not UTF-8, which no append writes: damage. Its bytes as they are, base64 (as text they
  // would be U+FFFD), the only copy once the segment is removed.
  if (line.undecodable) {
    return {
      reason: 'unreadable spool line: not UTF-8',
      ...where,
      line_base64: line.undecodable.toString('base64'),
    };
  }
  // Longer than any event an append writes: damage, not an acknowledged callback.
  if (line.text === undefined) {
    return {
      reason: `unreadable spool line of ${line.bytes} bytes, longer than any event`,
      ...where,
      bytes: line.bytes,
    };
  }
  return { reason: 'unreadable spool line', ...where, line: line.text };
}

/**
 * The event of a dead-letter record (or of an unreadable line a newer codec can now read). A
 * line kept as `line_base64` (not UTF-8) is decoded as strictly as the replay decodes it: it
 * stays a dead letter rather than coming back as an event with U+FFFD in place of its bytes.
 */
function deadLetterEvent(line: string): StatusEvent | undefined {
  let record: { event?: unknown; line?: unknown; line_base64?: unknown };
  try {
    record = JSON.parse(line) as typeof record;
  } catch {
    return undefined;
  }
  if (record.event !== undefined)
    return decodeSpoolLine(JSON.stringify({ v: 1, event: record.event }));
  if (typeof record.line === 'string') return decodeSpoolLine(record.line);
  if (typeof record.line_base64 === 'string') {
    const text = decodeUtf8(Buffer.from(record.line_base64, 'base64'));
    return text === undefined ? undefined : decodeSpoolLine(text);
  }
  return undefined;
}
