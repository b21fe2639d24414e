import { Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely';
import type { DatabaseConnection, QueryResult } from 'kysely';
import pino from 'pino';
import type { Db } from '../../src/db/database';
import type { StatusEvent } from '../../src/messages/status-event';
import type { ApplicationCallbacks } from '../../src/proxy/application-callback';
import { forwardSend } from '../../src/proxy/proxy.service';
import type { ProxyDeps, ValidSend } from '../../src/proxy/proxy.service';
import type { SignalWireClient, UpstreamRequest } from '../../src/proxy/signalwire-client';
import { testConfig } from '../helpers/test-app';

/**
 * What happens before a send is forwarded — the send intent written, an Application read —
 * must neither hold a send forever nor forward one whose caller is gone: a client that gave
 * up retries, and a send forwarded after that would reach the handset twice.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const APPLICATION = '3b8e0c3e-8f8a-4a51-9c5e-2b1f7f6f2a10';
const CLIENT_CALLBACK = 'https://app.example.com/sms/status';

interface Harness {
  deps: ProxyDeps;
  sent: UpstreamRequest[];
  queries: string[];
  recorded: StatusEvent[];
}

function harness(options: {
  executeQuery?: (sql: string) => Promise<unknown>;
  lookup?: ApplicationCallbacks['lookup'];
}): Harness {
  const sent: UpstreamRequest[] = [];
  const queries: string[] = [];
  const recorded: StatusEvent[] = [];
  const signalwire: SignalWireClient = {
    baseUrl: 'http://signalwire.test',
    send: (request) => {
      sent.push(request);
      const answer = {
        sid: '0a059168-ead0-41af-9d1f-343dae832527',
        account_sid: PROJECT,
        status: 'queued',
        to: '+15557654321',
        from: '+15551234567',
      };
      return Promise.resolve({
        ok: true,
        response: {
          status: 201,
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(JSON.stringify(answer)),
        },
      });
    },
    forward: () => Promise.reject(new Error('not used')),
  };
  // A Kysely whose connection records each statement and answers as the test says: the intent
  // writes run in transactions of their own (send-intents.ts), which need the real thing.
  const connection: DatabaseConnection = {
    executeQuery: (query) => {
      queries.push(query.sql);
      return (options.executeQuery ?? (() => Promise.resolve({ rows: [] })))(query.sql) as Promise<
        QueryResult<never>
      >;
    },
    streamQuery: () => {
      throw new Error('not used');
    },
  };
  const db: Db = new Kysely({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => ({
        init: () => Promise.resolve(),
        acquireConnection: () => Promise.resolve(connection),
        beginTransaction: () => Promise.resolve(),
        commitTransaction: () => Promise.resolve(),
        rollbackTransaction: () => Promise.resolve(),
        releaseConnection: () => Promise.resolve(),
        destroy: () => Promise.resolve(),
      }),
      createIntrospector: (kysely) => new PostgresIntrospector(kysely),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
  });
  const deps: ProxyDeps = {
    config: testConfig(),
    logger: pino({ enabled: false }),
    recorder: {
      record: (event) => {
        recorded.push(event);
        return Promise.resolve({} as never);
      },
      drain: () => Promise.resolve(),
    },
    db,
    signalwire,
    applications: {
      lookup: options.lookup ?? (() => Promise.resolve({ ok: true, url: null })),
    },
  };
  return { deps, sent, queries, recorded };
}

function compatSend(
  fields: { statusCallback?: string; applicationSid?: string },
  callerGone?: AbortSignal,
): ValidSend {
  return {
    api: 'cxml',
    target: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
    headers: { authorization: 'Basic eA==' },
    encode: (callbackUrl) => ({
      contentType: 'application/x-www-form-urlencoded',
      text: new URLSearchParams({
        To: '+15557654321',
        Body: 'x',
        StatusCallback: callbackUrl,
      }).toString(),
    }),
    facts: {
      projectId: PROJECT,
      to: '+15557654321',
      from: '+15551234567',
      body: 'x',
      kind: 'sms',
      clientStatusCallback: fields.statusCallback ?? null,
    },
    applicationSid: fields.applicationSid ?? null,
    projectIdAsWritten: PROJECT,
    callerGone,
  };
}

test('When writing the send intent never finishes (the database stopped answering), then the send is still forwarded and answered', async () => {
  const h = harness({ executeQuery: () => new Promise(() => undefined) });
  h.deps.intentWriteTimeoutMs = 50;

  const reply = await forwardSend(h.deps, compatSend({ statusCallback: CLIENT_CALLBACK }), 'r1');

  expect(reply).toMatchObject({ kind: 'upstream', status: 201 });
  expect(h.sent).toHaveLength(1);
  expect(h.recorded).toHaveLength(1);
});

test('When the caller has gone while the Application was read, then the send is not forwarded and its intent is dropped', async () => {
  const gone = new AbortController();
  const h = harness({
    lookup: () => {
      // The caller's client gave up while SignalWire was slow to answer the read.
      gone.abort();
      return Promise.resolve({ ok: true, url: CLIENT_CALLBACK });
    },
  });

  const reply = await forwardSend(
    h.deps,
    compatSend({ applicationSid: APPLICATION }, gone.signal),
    'r2',
  );

  expect(h.sent).toHaveLength(0);
  expect(h.recorded).toHaveLength(0);
  expect(reply).toEqual({ kind: 'abandoned' });
  // The intent written for the Application's callback is deleted again: no send, no relay.
  expect(h.queries.filter((sql) => sql.includes('INSERT INTO send_intents'))).toHaveLength(1);
  expect(h.queries.filter((sql) => sql.startsWith('DELETE FROM send_intents'))).toHaveLength(1);
});

test('When the caller is still there, then the send goes out as usual', async () => {
  const h = harness({});
  const reply = await forwardSend(
    h.deps,
    compatSend({ statusCallback: CLIENT_CALLBACK }, new AbortController().signal),
    'r3',
  );
  expect(reply).toMatchObject({ kind: 'upstream', status: 201 });
  expect(h.sent).toHaveLength(1);
});
