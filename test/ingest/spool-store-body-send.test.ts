import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createIngestRecorder } from '../../src/ingest/ingest';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { createTestApp, testConfig } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { runSpoolCommand } from './support/spool-command';
import { createTcpSwitch } from './support/tcp-switch';

/**
 * The proxy's record of a send, spooled by a run with STORE_BODY=true while PostgreSQL was
 * away, carries the text twice: in the upstream's answer (`body`) and as the send's own
 * (`send.body`, the message's body). Replayed with STORE_BODY=false — by the restarted
 * service or by the operator's spool command — neither is stored (spool-texts.ts).
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTspoolbodytesttoken');
const TEXT = 'my one-time code is 848484';

let sim: RunningSimulator;
let database: TestDatabase;
let dir: string;

beforeAll(async () => {
  // No callback within the test: only the proxy's records are spooled.
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  database = await createTestDatabase(4);
});
afterAll(async () => {
  await database.destroy();
  await sim.close();
});
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-send-body-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A run with STORE_BODY=true sends one native and one compatibility message through its proxy
 * while its PostgreSQL is unreachable, then stops: the ids of the sends, spooled in `dir`.
 */
async function sendDuringOutageStoringBodies(): Promise<string[]> {
  const tcp = await createTcpSwitch();
  const spool = await openSpool({ dir, logger });
  let viaSwitch: DatabaseHandle | undefined;
  let recorder: GroupCommitRecorder | undefined;
  const storing = await createTestApp(
    { SIGNALWIRE_SPACE_URL: sim.url, STORE_BODY: 'true', SPOOL_DIR: dir },
    {
      database,
      recorder: (deps) => {
        viaSwitch = createDb(tcp.relay(database.url), 2);
        recorder = createIngestRecorder({
          config: deps.config,
          db: viaSwitch.db,
          logger,
          spool,
        });
        deps.lifecycle.ingest = recorder;
        return recorder;
      },
    },
  );
  try {
    await tcp.cut();
    const native = await request(storing.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', AUTH)
      .send({ to: '+15551234567', from: '+15559876543', body: TEXT })
      .expect(201);
    const compat = await request(storing.internalApp)
      .post(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`)
      .set('Authorization', AUTH)
      .type('form')
      .send({ To: '+15551234567', From: '+15559876543', Body: TEXT })
      .expect(201);
    expect(recorder!.mode()).toBe('spooling');
    return [(native.body as { id: string }).id, (compat.body as { sid: string }).sid];
  } finally {
    // Stopped while the database is still away: the records stay in the spool.
    await storing.close();
    await viaSwitch?.db.destroy();
    await tcp.close();
  }
}

async function spooledText(): Promise<string> {
  const segments = (await readdir(dir)).filter((name) => name.startsWith('spool-'));
  return (await Promise.all(segments.map((name) => readFile(path.join(dir, name), 'utf8')))).join(
    '',
  );
}

async function storedTexts(ids: string[]) {
  const { rows } = await sql<{ body: string | null; texts: number; events: number }>`
    SELECT m.body,
           (SELECT count(*)::int FROM status_events e WHERE e.message_id = m.id) AS events,
           (SELECT count(*)::int FROM status_events e WHERE e.message_id = m.id
              AND e.raw::text LIKE '%848484%') AS texts
    FROM messages m WHERE m.id IN (${sql.join(ids)})`.execute(database.db);
  return rows;
}

const replays: Record<string, () => Promise<void>> = {
  async 'the service restarted with STORE_BODY=false'() {
    const recorder = createIngestRecorder({
      config: testConfig({ STORE_BODY: 'false', SPOOL_DIR: dir }),
      db: database.db,
      logger,
      spool: await openSpool({ dir, logger }),
    });
    try {
      await eventually(() => recorder.stats().replayed === 2, 'the spool replayed');
    } finally {
      await recorder.drain();
    }
  },
  async 'the spool command without STORE_BODY'() {
    const replay = await runSpoolCommand(['replay', dir], { DATABASE_URL: database.url });
    expect(replay.stderr).toBe('');
    expect(replay.code).toBe(0);
  },
};

test.each(Object.keys(replays))(
  'When sends a run with STORE_BODY=true spooled are replayed by %s, then neither their text nor their answer’s is stored',
  async (by) => {
    const ids = await sendDuringOutageStoringBodies();
    // What is to be stripped is really there: the answer's body and the send's own.
    const spooled = await spooledText();
    expect(spooled.split(TEXT).length - 1).toBeGreaterThanOrEqual(4);
    expect(spooled).toMatch(/"send":\{[^}]*"body":"my one-time code is 848484"/);

    await replays[by]!();

    expect(await storedTexts(ids)).toEqual([
      { body: null, events: 1, texts: 0 },
      { body: null, events: 1, texts: 0 },
    ]);
  },
);
