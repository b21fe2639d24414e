import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import request from 'supertest';
import { createLogger } from '../../src/logger';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { startReplicaStack } from './support/replica-stack';
import type { ReplicaStack } from './support/replica-stack';

/**
 * DATABASE_READ_URL's standby stops following the primary but stays in recovery: after a
 * failover that promoted another node (this standby still points at the old primary), a dropped
 * replication slot, a rotated replication password, a broken primary_conninfo. It answers reads
 * from a history that stopped, like a promoted standby — but pg_is_in_recovery() stays true, so
 * it was read from for ever: the feed gave empty pages, lists and stats froze, all 200, nothing
 * logged. Now it is refused once it has not replayed what the primary had written the lag bound
 * ago (db/standby-only.ts: 60 s; 3 s here, checked every 500 ms), said once in the log, and
 * served again once it follows again.
 */
jest.setTimeout(120_000);

const log: { level: number; msg: string }[] = [];
const logger = createLogger('info', {
  write: (line: string) => void log.push(JSON.parse(line) as { level: number; msg: string }),
});

let stack: ReplicaStack | undefined;
beforeAll(async () => {
  stack = await startReplicaStack({ reader: { maxLagMs: 3_000, checkEveryMs: 500, logger } });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

async function onStandby(statement: string): Promise<unknown[]> {
  const client = new Client({ connectionString: stack!.standby.url });
  await client.connect();
  try {
    return (await client.query(statement)).rows;
  } finally {
    await client.end();
  }
}

const get = (path: string) =>
  request(stack!.t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When the standby no longer receives the primary’s WAL, then its feed, lists and stats answer 503 instead of a frozen history, said once in the log, until it follows again', async () => {
  const { t, standby } = stack!;
  await standby.caughtUp();
  const start = await get('/v1/events?after=now');
  expect(start.status).toBe(200);

  // The standby loses its upstream; it stays a standby (pg_is_in_recovery() true).
  const [{ primary_conninfo: conninfo }] = (await onStandby('SHOW primary_conninfo')) as [
    { primary_conninfo: string },
  ];
  await onStandby(`ALTER SYSTEM SET primary_conninfo = ''`);
  await onStandby('SELECT pg_reload_conf()');
  await eventually(
    async () => (await onStandby('SELECT 1 FROM pg_stat_wal_receiver')).length === 0,
    'the standby’s WAL receiver to stop',
  );
  const sid = `SM${randomUUID().replace(/-/g, '')}`;
  expect((await postCxml(t.publicApp, cxmlFields({ MessageSid: sid }))).status).toBe(200);

  await eventually(
    async () => (await get('/v1/messages?limit=100')).status === 503,
    'lists to answer 503',
  );
  const feed = await get(`/v1/events?after=${start.body.next_cursor}&limit=100`);
  expect(feed.status).toBe(503);
  expect(feed.headers['retry-after']).toBeDefined();
  expect((await get('/v1/stats')).status).toBe(503);
  // The caller's own message still reads from the primary.
  expect((await get(`/v1/messages/${sid}`)).status).toBe(200);

  // Following again: served again, with the write.
  await onStandby(`ALTER SYSTEM SET primary_conninfo = '${conninfo.replaceAll("'", "''")}'`);
  await onStandby('SELECT pg_reload_conf()');
  await standby.caughtUp();
  await eventually(async () => {
    const list = await get('/v1/messages?limit=100');
    return list.status === 200 && list.body.data.some((m: { id: string }) => m.id === sid);
  }, 'lists to be served from the standby again');

  // Many refused reads, one line each way.
  expect(log.filter((line) => line.msg.startsWith('read replica')).map((line) => line.msg)).toEqual(
    [
      'read replica refused: its reads answer 503',
      'read replica follows DATABASE_URL again: its reads are served',
    ],
  );
});
