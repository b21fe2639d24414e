import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { encodeSpoolLine } from '../../src/ingest/spool-codec';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';

/**
 * Spool segments of large callbacks. A native callback may be up to 64 KiB (DESIGN §2) and its
 * spool line holds it twice (raw, and the relay's base64 copy): about 150 kB. A replay that
 * read a whole segment as one string failed on every attempt once a segment held some 3,600
 * such lines (V8's longest string), and the service then spooled every later callback too.
 * A segment now closes at a byte limit as well as an event count, and a replay streams it.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const root = path.resolve(__dirname, '../..');
let database: TestDatabase;
let dir: string;

beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(() => database.destroy());
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-large-segment-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** What a signed 64 KiB native callback becomes in the spool (as the handler builds it). */
function bigEvent(): StatusEvent {
  const id = randomUUID();
  const raw = {
    id,
    project_id: 'b2c3d4e5-f6a7-8901-bcde-f12345678901',
    status: 'delivered',
    to: '+15551234567',
    from: '+15559876543',
    timestamp: '2026-03-17T22:26:57Z',
    custom_variables: { note: 'x'.repeat(63_000) },
  };
  return {
    messageId: id,
    api: 'native',
    source: 'callback',
    projectId: raw.project_id,
    status: 'delivered',
    rawStatus: 'delivered',
    errorCode: null,
    errorMessage: null,
    from: raw.from,
    to: raw.to,
    numSegments: 1,
    numMedia: null,
    providerTimestamp: new Date(raw.timestamp),
    receivedAt: new Date(),
    raw,
    relay: {
      method: 'POST',
      contentType: 'application/json',
      body: Buffer.from(JSON.stringify(raw)).toString('base64'),
      keyRef: null,
    },
  };
}

async function segmentFiles(): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith('spool-')).sort();
}

test('When 64 KiB callbacks are spooled, then each segment closes at its byte limit and the recorder replays them all into PostgreSQL', async () => {
  const limit = 1_000_000;
  const line = Buffer.byteLength(encodeSpoolLine(bigEvent()));
  const events = Array.from({ length: 16 }, bigEvent);
  const spool = await openSpool({ dir, logger, segmentMaxBytes: limit });
  for (const event of events) await spool.append([event]);

  const segments = await segmentFiles();
  expect(segments.length).toBeGreaterThanOrEqual(Math.floor((16 * line) / (limit + line)));
  for (const name of segments) {
    // Closed by the append that reached the limit.
    expect((await stat(path.join(dir, name))).size).toBeLessThan(limit + line);
  }

  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool,
    batchMax: 10,
    batchWaitMs: 1,
    queueMax: 100,
    maxInFlight: 1,
    replayChunk: 4,
  });
  recorder.start();
  try {
    await eventually(() => recorder.mode() === 'direct', 'the spool replayed');
    const stored = await database.db
      .selectFrom('status_events')
      .select('message_id')
      .where(
        'message_id',
        'in',
        events.map((event) => event.messageId),
      )
      .execute();
    expect(stored).toHaveLength(events.length);
    expect(await segmentFiles()).toEqual([]);
  } finally {
    await recorder.drain();
  }
});

test('When a segment is larger than the replaying process’s whole heap, then it is replayed a chunk at a time, its unreadable line is dead-lettered and its torn tail skipped', async () => {
  // The segment as a crashed process left it: 64 MB of 64 KiB callbacks — one line unreadable,
  // the last one torn by the crash (never acknowledged).
  const file = path.join(dir, `spool-${'1'.padStart(20, '0')}.jsonl`);
  const out = createWriteStream(file);
  const template = bigEvent();
  const ids: string[] = [];
  for (let bytes = 0, index = 0; bytes < 64_000_000; index++) {
    let text = '{"v":1,"event":{"messageId":"cut short\n';
    if (index !== 100) {
      const id = randomUUID();
      ids.push(id);
      text = encodeSpoolLine({ ...template, messageId: id });
    }
    bytes += text.length;
    if (!out.write(text)) await once(out, 'drain');
  }
  out.end('{"v":1,"event":{"messageId":"torn');
  await once(out, 'finish');

  // In a process whose heap (64 MB) cannot hold the segment as a string and its events at once:
  // a replay that read the segment whole would end it (heap out of memory).
  const script = `
    import { openSpool } from './src/ingest/spool';
    import { createLogger } from './src/logger';
    void (async () => {
      const spool = await openSpool({ dir: process.env.SPOOL_UNDER_TEST!, logger: createLogger('silent') });
      const ids: string[] = [];
      let largestChunk = 0;
      await spool.replay(async (chunk) => {
        largestChunk = Math.max(largestChunk, chunk.length);
        for (const event of chunk) ids.push(event.messageId);
      }, 10);
      await spool.close();
      process.stdout.write(JSON.stringify({ ids, largestChunk, empty: spool.isEmpty() }));
    })();`;
  const { stdout } = await promisify(execFile)(
    path.join(root, 'node_modules/.bin/tsx'),
    ['-e', script],
    {
      cwd: root,
      env: {
        ...process.env,
        SPOOL_UNDER_TEST: dir,
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=64`,
      },
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  const result = JSON.parse(stdout) as { ids: string[]; largestChunk: number; empty: boolean };
  expect(result.ids).toEqual(ids);
  expect(result.largestChunk).toBe(10);
  expect(result.empty).toBe(true);
  expect(await segmentFiles()).toEqual([]);
  const deadLetters = (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n');
  expect(deadLetters.map((record) => JSON.parse(record))).toEqual([
    expect.objectContaining({
      reason: 'unreadable spool line',
      line: '{"v":1,"event":{"messageId":"cut short',
    }),
  ]);
});
