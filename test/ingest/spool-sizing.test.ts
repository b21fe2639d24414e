import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { createPublicApp } from '../../src/app';
import { createDb } from '../../src/db/database';
import type { Lifecycle } from '../../src/http/health.routes';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { signFormParams } from '../../src/signalwire/signing';
import { cxmlFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, testConfig } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * What a spooled callback takes on the spool's volume, through the real callback path, against
 * what k8s/app/statefulset.yaml and README ("What survives what") size the claim by. The
 * manifest said "a day of callbacks at 100/s is about 5 GiB" while a realistic callback took
 * 1.28 kB (10.3 GiB a day): the shipped 1Gi lasted half as long as an operator would plan for.
 * A spooled line holds the normalised event, the raw callback and the body kept to relay it.
 */

const logger = createLogger('silent');
const ROOT = path.join(__dirname, '..', '..');
const CALLBACKS = 200;

let database: TestDatabase;
let spoolDir: string;
beforeAll(async () => {
  database = await createTestDatabase(2);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-sizing-'));
});
afterAll(async () => {
  await database?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

/** The figure a document states, in GiB, from the first match of `pattern`. */
function stated(file: string, pattern: RegExp): number {
  const text = readFileSync(path.join(ROOT, file), 'utf8').replace(/\s*#\s*/g, ' ');
  const match = pattern.exec(text.replace(/\s+/g, ' '));
  if (!match) throw new Error(`${file} no longer says ${pattern}`);
  return Number(match[1]);
}

test('When callbacks are spooled, then each takes about what the manifest and README size the spool claim by', async () => {
  // The database unreachable (a port nothing listens on): every callback is spooled.
  const config = testConfig({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000000' });
  const unreachable = createDb('postgres://nobody@127.0.0.1:1/none', 1);
  const recorder = createGroupCommitRecorder({
    db: unreachable.db,
    logger,
    spool: await openSpool({ dir: spoolDir, logger }),
    batchMax: config.ingestBatchMax,
    batchWaitMs: config.ingestBatchWaitMs,
    queueMax: config.ingestQueueMax,
    queueMaxBytes: config.ingestQueueMaxBytes,
    maxInFlight: 2,
    probeIntervalMs: 60_000,
    commitTimeoutMs: 1_000,
  });
  recorder.start();
  const lifecycle: Lifecycle = { draining: false, ingest: recorder };
  const app = createPublicApp({ config, logger, db: database.db, recorder, lifecycle });
  try {
    for (let i = 0; i < CALLBACKS; i++) {
      // A SignalWire cXML status callback with the fields SIGNALWIRE.md lists and a short
      // (70-character) text.
      const sid = randomUUID();
      const fields = cxmlFields({
        MessageSid: sid,
        SmsSid: sid,
        MessageStatus: 'delivered',
        SmsStatus: 'delivered',
        ApiVersion: '2010-04-01',
        Body: 'Your verification code is 482913. It expires in 10 minutes. Do not share',
      });
      const res = await request(app)
        .post('/callbacks/cxml')
        .type('form')
        .set(
          'X-SignalWire-Signature',
          signFormParams(
            TEST_SIGNING_KEY,
            `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`,
            Object.entries(fields),
          ),
        )
        .send(new URLSearchParams(fields).toString());
      expect(res.status).toBe(200);
    }
    expect(recorder.mode()).toBe('spooling');
  } finally {
    await recorder.drain();
    await unreachable.db.destroy();
  }

  let bytes = 0;
  for (const name of await readdir(spoolDir)) {
    if (name.startsWith('spool-')) bytes += (await stat(path.join(spoolDir, name))).size;
  }
  const perCallback = bytes / CALLBACKS;
  const gibPerDayAt100 = (perCallback * 100 * 86_400) / 1024 ** 3;
  const gibPerHourAt500 = (perCallback * 500 * 3_600) / 1024 ** 3;

  const manifestDay = stated(
    'k8s/app/statefulset.yaml',
    /a day of callbacks at 100\/s is about ([\d.]+) GiB/,
  );
  const readmeDay = stated('README.md', /a day at 100\/s about ([\d.]+) GiB/);
  const readmeHour = stated(
    'README.md',
    /an hour of an outage at 500 callbacks\/s per pod is about ([\d.]+) GiB/,
  );
  const within = (statedGiB: number, measured: number) => Math.abs(statedGiB / measured - 1);
  expect({ perCallback: Math.round(perCallback), manifestDay, readmeDay, readmeHour }).toEqual({
    perCallback: expect.any(Number),
    manifestDay: expect.any(Number),
    readmeDay: manifestDay,
    readmeHour: expect.any(Number),
  });
  // "About": within a fifth of what is measured here.
  expect(within(manifestDay, gibPerDayAt100)).toBeLessThan(0.2);
  expect(within(readmeHour, gibPerHourAt500)).toBeLessThan(0.2);
}, 60_000);
