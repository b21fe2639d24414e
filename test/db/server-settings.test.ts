import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { sql } from 'kysely';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';
import { IDLE_IN_TRANSACTION_TIMEOUT_MS } from '../../src/db/kysely-pool';
import { createFeedSignal } from '../../src/feed/feed-signal';
import { createLogger } from '../../src/logger';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Settings a managed PostgreSQL lets an operator give a database or a role, which the
 * service's sessions then start with: the service must work under each (README "PostgreSQL for
 * sw-status").
 */

const databaseName = (url: string): string => new URL(url).pathname.slice(1);
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

describe('a database whose DateStyle is not ISO', () => {
  let t: TestApp;
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(2);
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} SET datestyle = 'SQL, DMY'`);
    t = await createTestApp({}, { database });
  });
  afterAll(async () => {
    await t?.close();
    await database?.destroy();
  });

  test('When a callback is stored, then the query API, the feed and the stats read it back with its timestamps', async () => {
    const id = randomUUID();
    expect((await postNative(t.publicApp, nativeFields({ id, status: 'delivered' }))).status).toBe(
      200,
    );
    const get = (path: string) =>
      request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
    await eventually(async () => (await get(`/v1/messages/${id}`)).status === 200, 'stored');
    // The feed shows an event once no older transaction can still commit below it.
    await eventually(
      async () => (await get('/v1/events?limit=5')).body.data?.length === 1,
      'in the feed',
    );

    const [one, list, feed, stats] = await Promise.all([
      get(`/v1/messages/${id}`),
      get('/v1/messages?limit=5'),
      get('/v1/events?limit=5'),
      get('/v1/stats'),
    ]);

    expect({
      one: [one.status, one.body.created_at],
      list: [list.status, list.body.data?.[0]?.last_event_at],
      feed: [feed.status, feed.body.data?.[0]?.received_at],
      stats: [stats.status, stats.body.total],
    }).toEqual({
      one: [200, expect.stringMatching(ISO_TIME)],
      list: [200, expect.stringMatching(ISO_TIME)],
      feed: [200, expect.stringMatching(ISO_TIME)],
      stats: [200, 1],
    });
  });

  test("When the connection string's own options set another DateStyle, then the service's connections still read timestamps", async () => {
    const url = new URL(database.url);
    url.searchParams.set('options', '-c DateStyle=German');
    const handle = createDb(url.toString(), 1);
    try {
      const { rows } = await sql<{
        at: unknown;
        datestyle: string;
      }>`SELECT now() AS at, current_setting('DateStyle') AS datestyle`.execute(handle.db);
      expect(rows[0]!.at).toBeInstanceOf(Date);
      expect(rows[0]!.datestyle).toMatch(/^ISO, /);
    } finally {
      await handle.db.destroy();
    }
  });
});

describe('a database with an idle_session_timeout', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(1);
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} SET idle_session_timeout = '1s'`);
  });
  afterAll(() => database?.destroy());

  test("When the change feed's listening connection is idle longer, then the server leaves it open", async () => {
    const written: string[] = [];
    const signal = createFeedSignal({
      connectionString: database.url,
      logger: createLogger('info', { write: (line: string) => void written.push(line) }),
    });
    try {
      await eventually(() => signal.listening(), 'the LISTEN connection is up');
      // Three timeouts' worth of idleness (its pings come every 10 s).
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      expect(signal.listening()).toBe(true);
      expect(written.filter((line) => line.includes('connection lost'))).toEqual([]);
    } finally {
      await signal.close();
    }
  });

  test('When the server ends an idle session, then the error it sends counts as the database unavailable (a new connection works), not as a fault of the statement', async () => {
    const client = new Client({ connectionString: database.url });
    const ended = new Promise<unknown>((resolve) => client.once('error', resolve));
    await client.connect();
    const error = await ended;
    await client.end().catch(() => undefined);

    expect((error as { code?: string }).code).toBe('57P05');
    expect(isDatabaseUnavailable(error)).toBe(true);
  });
});

describe('a session refused by a server whose messages are not in English', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(1);
  });
  afterAll(async () => {
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} ALLOW_CONNECTIONS true`);
    await database?.destroy();
  });

  test('When the database is closed to connections, then the refusal is known by its code and the server routine that raised it, whatever its words', async () => {
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} ALLOW_CONNECTIONS false`);
    const client = new Client({ connectionString: database.url });
    const error = (await client.connect().then(
      () => undefined,
      (caught: unknown) => caught,
    )) as Error & { code?: string };
    await client.end().catch(() => undefined);
    expect(error.code).toBe('55000');

    // As a server with lc_messages = 'de_DE.UTF-8' words it.
    const german = Object.assign(error, {
      message: `Datenbank »${databaseName(database.url)}« erlaubt gegenwärtig keine Verbindungen`,
    });
    expect(isDatabaseUnavailable(german)).toBe(true);
  });
});

describe("a database whose idle_in_transaction_session_timeout is an operator's", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(1);
  });
  afterAll(() => database?.destroy());

  const insideTransaction = async (): Promise<string> => {
    const handle = createDb(database.url, 1);
    try {
      return await handle.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{
          value: string;
        }>`SELECT current_setting('idle_in_transaction_session_timeout') AS value`.execute(trx);
        return rows[0]!.value;
      });
    } finally {
      await handle.db.destroy();
    }
  };

  test.each([
    ['shorter than the service’s bound', '2s', '2s'],
    ['longer than the service’s bound', '5min', `${IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000}s`],
    ['off', '0', `${IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000}s`],
  ])(
    'When it is %s, then the service’s transactions keep the shorter of the two',
    async (_what, operators, expected) => {
      await asAdmin(
        `ALTER DATABASE ${databaseName(database.url)} SET idle_in_transaction_session_timeout = '${operators}'`,
      );
      expect(await insideTransaction()).toBe(expected);
    },
  );
});

describe('a database whose array_nulls is off', () => {
  // A backward-compatibility setting an operator or an old dump can leave on a database: an
  // unquoted NULL in an array literal is then the text 'NULL' (a syntax error in a number or
  // time array). The write path sends its batches as array literals.
  let t: TestApp;
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(2);
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} SET array_nulls = off`);
    t = await createTestApp({}, { database });
  });
  afterAll(async () => {
    await t?.close();
    await database?.destroy();
  });

  test('When genuine callbacks with empty fields come, then they are stored (200) with those fields empty, not refused as malformed', async () => {
    const nativeId = randomUUID();
    const native = await postNative(t.publicApp, nativeFields({ id: nativeId, status: 'sent' }));
    expect([native.status, native.body?.error?.code]).toEqual([200, undefined]);

    const cxmlId = `SM${randomUUID().replace(/-/g, '')}`;
    const cxml = await postCxml(
      t.publicApp,
      cxmlFields({ MessageSid: cxmlId, MessageStatus: 'delivered' }),
    );
    expect([cxml.status, cxml.body?.error?.code]).toEqual([200, undefined]);

    for (const [id, status] of [
      [nativeId, 'sent'],
      [cxmlId, 'delivered'],
    ]) {
      const got = await request(t.internalApp)
        .get(`/v1/messages/${id}`)
        .auth(TEST_API_TOKEN, { type: 'bearer' });
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ status, error_code: null, error_message: null });
    }
  });
});
