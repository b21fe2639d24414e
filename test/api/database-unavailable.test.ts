import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { createInternalApp } from '../../src/app';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { freePort } from '../../src/db/free-port';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { recordEvents } from '../../src/messages/record-events';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { cxmlFields } from '../helpers/callbacks';
import { TEST_API_TOKEN, testConfig } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { createTcpSwitch } from '../ingest/support/tcp-switch';
import type { TcpSwitch } from '../ingest/support/tcp-switch';

/**
 * The query API while PostgreSQL really cannot be reached — a port nothing listens on, and a
 * database that goes away under a working service — answers 503 with Retry-After in the
 * service's error shape, never a 500, and works again as soon as the database is back.
 */

const auth = { Authorization: `Bearer ${TEST_API_TOKEN}` };
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

function internalApp(db: DatabaseHandle['db']) {
  return createInternalApp({
    config: testConfig(),
    logger,
    db,
    recorder: directRecorder(db),
    lifecycle: { draining: false },
  });
}

function expectUnavailable(res: request.Response): void {
  expect(res.status).toBe(503);
  expect(res.headers['retry-after']).toBe('2');
  expect(res.body).toEqual({
    error: {
      code: 'unavailable',
      message: 'The database is unavailable; retry later',
      request_id: expect.any(String),
    },
  });
}

describe('when PostgreSQL was never reachable', () => {
  let handle: DatabaseHandle;
  beforeAll(async () => {
    handle = createDb(`postgres://postgres@127.0.0.1:${await freePort()}/nothing`, 2);
  });
  afterAll(() => handle.db.destroy());

  test.each([
    ['a message', () => `/v1/messages/${randomUUID()}`],
    ['a list', () => '/v1/messages?status=delivered'],
  ])('When %s is asked for, then the answer is 503 with Retry-After', async (_what, path) => {
    expectUnavailable(await request(internalApp(handle.db)).get(path()).set(auth));
  });
});

describe('when PostgreSQL goes away under a working service', () => {
  let database: TestDatabase;
  let tcp: TcpSwitch;
  let handle: DatabaseHandle;
  const event = normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });

  beforeAll(async () => {
    database = await createTestDatabase(1);
    await recordEvents(database.db, [event]);
    tcp = await createTcpSwitch();
    handle = createDb(tcp.relay(database.url), 2);
  });
  afterAll(async () => {
    await handle.db.destroy();
    await tcp.close();
    await database.destroy();
  });

  test('When the connection is cut, then queries answer 503 until it is back, then 200', async () => {
    const app = internalApp(handle.db);
    const path = `/v1/messages/${event.messageId}`;
    expect((await request(app).get(path).set(auth)).status).toBe(200);

    await tcp.cut();
    expectUnavailable(await request(app).get(path).set(auth));
    expectUnavailable(await request(app).get('/v1/messages').set(auth));
    // Bad input is still the client's problem, whatever the database's state.
    expect((await request(app).get('/v1/messages?limit=0').set(auth)).status).toBe(400);

    await tcp.restore();
    const back = await request(app).get(path).set(auth);
    expect(back.status).toBe(200);
    expect(back.body.id).toBe(event.messageId);
  });
});
