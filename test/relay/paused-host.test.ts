import { createMetrics } from '../../src/metrics/metrics';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp, TEST_SIGNING_KEY } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually, seedProxiedMessage, startCustomerApp } from './support';
import type { CustomerApp } from './support';

/**
 * DESIGN §10: a relay is retried on RELAY_RETRY_SCHEDULE, "then the job is dead", and a host
 * failing repeatedly is paused by the circuit breaker. The two together: a job due while its
 * host is paused takes that step of its schedule without a request, so a host that stays down
 * has its relays dead when their schedule ends — counted, alerted on, retryable through the API —
 * rather than pending for as long as it is down (its jobs were not even claimed, so attempts
 * and next_attempt_at never moved and the backlog grew without limit).
 */
jest.setTimeout(60_000);

let t: TestApp;
let app: CustomerApp;
let worker: RelayWorker;
const metrics = createMetrics({ processMetrics: false });

beforeAll(async () => {
  t = await createTestApp({ RELAY_RETRY_SCHEDULE: '100ms,200ms,300ms' });
  app = await startCustomerApp(TEST_SIGNING_KEY);
  worker = createRelay({
    config: t.config,
    db: t.database.db,
    logger: t.deps.logger,
    registry: metrics.registry,
    // Open after 2 failures, for far longer than the test: no half-open trial meanwhile.
    tuning: { pollMs: 20, statsEveryMs: 50, breaker: { failureThreshold: 2, openMs: 600_000 } },
  });
  worker.start();
});

afterAll(async () => {
  await worker.stop();
  await app.close();
  await t.close();
});

test('When a host stays down with its circuit open, then its relays are dead once their schedule has passed, without a request each', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/down'));
    app.behave(id, () => ({ status: 503 }));
    ids.push(id);
  }
  for (const id of ids) {
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  }

  const jobs = await eventually(async () => {
    const rows = await t.database.db
      .selectFrom('relay_jobs')
      .select(['state', 'attempts', 'last_error', 'payload'])
      .where('message_id', 'in', ids)
      .execute();
    return rows.length === ids.length && rows.every((row) => row.state === 'dead') && rows;
  }, 30_000);

  // Every job used its four steps (a first try and three retries), most of them unsent: the
  // app saw a request only until the circuit opened (2 failures, plus those already under way).
  expect(jobs.map((job) => job.attempts)).toEqual(ids.map(() => 4));
  const requests = app.received.filter((r) => ids.includes(r.messageId)).length;
  expect(requests).toBeLessThanOrEqual(2 + 4);
  const unsent = jobs.filter((job) => /paused by the circuit breaker/.test(job.last_error ?? ''));
  expect(unsent.length).toBeGreaterThan(0);
  // It says why the host is paused: the app's own last answer.
  expect(unsent[0]!.last_error).toMatch(/\(last: HTTP 503\) \(after 4 attempts\)$/);
  // Dead as any other: its message text dropped, counted, and in the dead list.
  for (const job of jobs) expect(job.payload?.toString() ?? '').not.toContain('Body=');
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/sw_status_relay_attempts_total\{outcome="paused"\} [1-9]/);
  expect(text).toMatch(/sw_status_relay_attempts_total\{outcome="dead"\} 12\b/);
});
