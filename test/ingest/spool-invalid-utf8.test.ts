import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { encodeSpoolLine } from '../../src/ingest/spool-codec';
import { readLines } from '../../src/ingest/spool-lines';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';

/**
 * A spool line is valid UTF-8 whenever an append writes it (JSON.stringify escapes lone
 * surrogates), so one holding bytes that are not UTF-8 is damage: a bad block, a bit flip.
 * Decoded leniently, each such byte became U+FFFD: a damaged line that still parsed was
 * replayed as a different event (a message id no callback carried), and one that did not was
 * dead-lettered with its bytes already replaced, so once its segment was removed the original
 * bytes were gone. Such a line is unreadable: dead-lettered with its bytes (`line_base64`),
 * once, and kept by a requeue rather than guessed at.
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

/** The encoded line of `e` with the byte `index` bytes into the first `needle` set to 0xFF. */
function damaged(e: StatusEvent, needle: string, index: number): Buffer {
  const line = Buffer.from(encodeSpoolLine(e), 'utf8');
  const at = line.indexOf(needle);
  if (at === -1) throw new Error('needle not found');
  line[at + index] = 0xff;
  return line;
}

const SEGMENT = `spool-${'1'.padStart(20, '0')}.jsonl`;

let dir: string;
beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-utf8-')), 'spool');
  await mkdir(dir);
});
afterEach(async () => {
  await rm(path.dirname(dir), { recursive: true, force: true });
});

/** Replays the spool in `dir` until empty, as a process would; returns what it committed. */
async function replayAll(): Promise<StatusEvent[]> {
  const spool = await openSpool({ dir, logger });
  const replayed: StatusEvent[] = [];
  try {
    await spool.replay(async (events) => {
      replayed.push(...events);
    }, 10);
    expect(spool.isEmpty()).toBe(true);
  } finally {
    await spool.close();
  }
  return replayed;
}

async function deadLetterRecords(): Promise<Array<Record<string, unknown>>> {
  return (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8'))
    .trim()
    .split('\n')
    .map((text) => JSON.parse(text) as Record<string, unknown>);
}

test('When a spooled line holds bytes that are not UTF-8 but still parses, then it is not replayed as an event with U+FFFD in its message id but dead-lettered with its bytes', async () => {
  const good = event();
  const hit = event();
  // The message id's second character becomes 0xFF: not UTF-8, so not written by an append.
  const bad = damaged(hit, `"messageId":"${hit.messageId}"`, '"messageId":"'.length + 1);
  await writeFile(
    path.join(dir, SEGMENT),
    Buffer.concat([Buffer.from(encodeSpoolLine(good), 'utf8'), bad]),
  );

  const replayed = await replayAll();

  expect(replayed.map((e) => e.messageId)).toEqual([good.messageId]);
  const records = await deadLetterRecords();
  expect(records).toHaveLength(1);
  expect(records[0]).toMatchObject({
    segment: SEGMENT,
    offset: Buffer.byteLength(encodeSpoolLine(good)),
  });
  expect(records[0]!.line).toBeUndefined();
  expect(records[0]!.line_base64).toBe(bad.subarray(0, bad.length - 1).toString('base64'));
});

test('When a spooled line holds bytes that are not UTF-8 and does not parse, then its dead letter keeps its bytes as they were', async () => {
  const good = event();
  const hit = event();
  // 0xFF in place of the `{` that opens the event: neither UTF-8 nor JSON.
  const bad = damaged(hit, '"event":{', '"event":'.length);
  await writeFile(
    path.join(dir, SEGMENT),
    Buffer.concat([Buffer.from(encodeSpoolLine(good), 'utf8'), bad]),
  );

  expect((await replayAll()).map((e) => e.messageId)).toEqual([good.messageId]);

  // The segment is gone: the dead letter is the only copy of what the line held.
  const records = await deadLetterRecords();
  expect(records).toHaveLength(1);
  expect(records[0]!.line_base64).toBe(bad.subarray(0, bad.length - 1).toString('base64'));
});

test('When a segment with a line that is not UTF-8 is replayed again by the next process, then the line is kept once, and a requeue keeps it rather than guessing its text', async () => {
  const hit = event();
  const bad = damaged(hit, `"messageId":"${hit.messageId}"`, '"messageId":"'.length + 1);
  await writeFile(path.join(dir, SEGMENT), bad);
  // Dead-lettered, then the same segment again (a crash before its removal, say).
  await replayAll();
  await writeFile(path.join(dir, SEGMENT), bad);
  await replayAll();
  const before = await readFile(path.join(dir, DEAD_LETTER_FILE));
  expect(await deadLetterRecords()).toHaveLength(1);

  const spool = await openSpool({ dir, logger });
  try {
    expect(spool.deadLetters()).toBe(1);
    expect(await spool.requeueDeadLetters()).toEqual({ requeued: 0, kept: 1 });
    expect(spool.depth()).toBe(0);
    expect(spool.deadLetters()).toBe(1);
  } finally {
    await spool.close();
  }
  expect(await readFile(path.join(dir, DEAD_LETTER_FILE))).toEqual(before);
});

test('When a segment replayed again after an upgrade holds a line that is not UTF-8 the previous build already dead-lettered as text, then the line is not dead-lettered a second time', async () => {
  const good = Buffer.from(encodeSpoolLine(event()), 'utf8');
  const bad = damaged(event(), '"event":{', '"event":'.length);
  await writeFile(path.join(dir, SEGMENT), Buffer.concat([good, bad]));
  // What the build before `line_base64` wrote before its pass failed (a full disk, a crash)
  // and left the segment in place: the line decoded leniently (U+FFFD), under `line`.
  const previous = {
    rejected_at: new Date().toISOString(),
    reason: 'unreadable spool line',
    segment: SEGMENT,
    offset: good.length,
    line: bad.subarray(0, bad.length - 1).toString('utf8'),
  };
  await writeFile(path.join(dir, DEAD_LETTER_FILE), `${JSON.stringify(previous)}\n`);

  const spool = await openSpool({ dir, logger });
  try {
    await spool.replay(async () => undefined, 10);
    expect(spool.isEmpty()).toBe(true);
    expect(spool.deadLetters()).toBe(1);
  } finally {
    await spool.close();
  }
  expect(await deadLetterRecords()).toEqual([previous]);
});

test('When a line that is not UTF-8 spans many reads, then the reader gives its bytes and no text, and the lines around it their text', async () => {
  const file = path.join(dir, 'lines');
  const bad = Buffer.from([0x61, 0xe2, 0x82, 0x61, 0x62]); // "a", a cut "€", "ab"
  await writeFile(file, Buffer.concat([Buffer.from('é€\n'), bad, Buffer.from('\n𝄞\n')]));

  const lines = [];
  for await (const line of readLines(file, 100, 2)) lines.push(line);

  expect(lines).toEqual([
    { offset: 0, bytes: 5, text: 'é€' },
    { offset: 6, bytes: 5, text: undefined, undecodable: bad },
    { offset: 12, bytes: 4, text: '𝄞' },
  ]);
});
