import type { Db } from '../../src/db/database';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * A claimed relay starts only within half the lease's slack of its claim (relay-worker.ts).
 * That time runs from the claim: the work a turn does before claiming (the outbox's backlog
 * metrics, giving back stale jobs) is no part of the lease, which the claim's own statement
 * stamps. Here that work is slow (a backlog count on a busy database): the lease's slack is
 * shortened (leaseSlackMs 2 000: start within 1 s) and the backlog count takes 1.5 s. (The
 * window is not shorter: a claim's own round trip on a loaded machine must fit in it.)
 */
jest.setTimeout(30_000);

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_TIMEOUT_MS: '15000', RELAY_RETRY_SCHEDULE: '30s' });
  app = await t.customerApp();
});

afterAll(() => t.close());

/** `db`, whose statement reading the outbox's backlog answers `delayMs` late. */
function withSlowBacklogCount(db: Db, delayMs: number): Db {
  const executor = db.getExecutor();
  const slowExecutor = new Proxy(executor, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (prop === 'executeQuery') {
        return async (query: { sql: string }, ...rest: unknown[]) => {
          if (query.sql.includes("FROM relay_jobs WHERE state = 'dead'")) {
            await new Promise((resolve) => setTimeout(resolve, delayMs));
          }
          return (value as (...args: unknown[]) => unknown).call(target, query, ...rest);
        };
      }
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'getExecutor') return () => slowExecutor;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
}

test('When a turn’s work before its claim is slow, then the jobs it claims are still sent', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/slow-stats'));
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  t.startWorker({
    db: withSlowBacklogCount(t.database.db, 1_500),
    // The backlog is counted on every turn.
    tuning: { statsEveryMs: 0, leaseSlackMs: 2_000 },
  });
  await eventually(() => app.received.some((relay) => relay.messageId === id), 15_000);
});
