import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createIngestRecorder } from '../../src/ingest/ingest';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { nativeFields } from '../helpers/callbacks';
import { createTestApp, testConfig } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { createTcpSwitch } from './support/tcp-switch';

/**
 * A token callback is verified when it arrives (DESIGN §2); the spool keeps its ref, not the
 * token. A CALLBACK_TOKEN_SECRET rotated between the outage and the replay (the old secret
 * dropped from the list) therefore loses nothing that was acknowledged: the replay checks the
 * ref's binding only, as it does for a live callback.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const OLD_SECRET = 'spool-rotation-old-secret-0123456789';
const NEW_SECRET = 'spool-rotation-new-secret-0123456789';

let database: TestDatabase;
let dir: string;
beforeAll(async () => {
  database = await createTestDatabase(4);
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-rotation-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await database.destroy();
});

test('When the token secret is rotated between spooling a callback and replaying it, then the acknowledged callback is stored and bound to its send', async () => {
  const tcp = await createTcpSwitch();
  const spool = await openSpool({ dir, logger });
  let viaSwitch: DatabaseHandle | undefined;
  let recorder: GroupCommitRecorder | undefined;
  const before = await createTestApp(
    { CALLBACK_TOKEN_SECRET: OLD_SECRET, SPOOL_DIR: dir },
    {
      database,
      recorder: (deps) => {
        viaSwitch = createDb(tcp.relay(database.url), 2);
        recorder = createIngestRecorder({ config: deps.config, db: viaSwitch.db, logger, spool });
        deps.lifecycle.ingest = recorder;
        return recorder;
      },
    },
  );
  const { token, ref } = mintCallbackToken([OLD_SECRET]);
  const id = randomUUID();
  try {
    await tcp.cut();
    await request(before.publicApp)
      .post(`/callbacks/native/${token}`)
      .send(nativeFields({ id, status: 'delivered' }))
      .expect(200);
    expect(recorder!.mode()).toBe('spooling');
  } finally {
    await before.close();
    await viaSwitch?.db.destroy();
    await tcp.close();
  }

  // Restarted with the old secret gone: the same token would now be refused live.
  const config = testConfig({ CALLBACK_TOKEN_SECRET: NEW_SECRET, SPOOL_DIR: dir });
  const after = createIngestRecorder({
    config,
    db: database.db,
    logger,
    spool: await openSpool({ dir, logger }),
  });
  try {
    await eventually(() => after.stats().replayed === 1, 'the spool replayed');
  } finally {
    await after.drain();
  }

  expect(after.stats().replayRefused).toBe(0);
  const message = await database.db
    .selectFrom('messages')
    .select(['ref', 'status'])
    .where('id', '=', id)
    .executeTakeFirst();
  expect(message).toEqual({ ref, status: 'delivered' });

  // The rotation is real: live, the token the outage acknowledged is refused now.
  const live = await createTestApp({ CALLBACK_TOKEN_SECRET: NEW_SECRET }, { database });
  try {
    await request(live.publicApp)
      .post(`/callbacks/native/${token}`)
      .send(nativeFields({ id, status: 'read' }))
      .expect(403);
  } finally {
    await live.close();
  }
});
