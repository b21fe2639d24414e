import request from 'supertest';
import { createMetrics } from '../../src/metrics/metrics';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp, TEST_API_TOKEN, TEST_SIGNING_KEY } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually, seedProxiedMessage, startCustomerApp } from './support';
import type { CustomerApp } from './support';

/**
 * DESIGN §10: a relay is retried on RELAY_RETRY_SCHEDULE, "then the job is dead", and a host
 * failing repeatedly is paused by the circuit breaker, whose jobs are not claimed. Together: a
 * host that stays paused for longer than the schedule must still have its relays dead once the
 * schedule (and its grace) has passed — counted, listed, retryable — not pending for as long as
 * it is down (attempts and next_attempt_at never moved, and the backlog grew without limit).
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
    tuning: {
      pollMs: 20,
      statsEveryMs: 50,
      // Open after 2 failures, for far longer than the test: no half-open trial meanwhile.
      breaker: { failureThreshold: 2, openMs: 600_000 },
      overdueEveryMs: 100,
      overdueGraceMs: 300,
    },
  });
  worker.start();
});

afterAll(async () => {
  await worker.stop();
  await app.close();
  await t.close();
});

async function jobsOf(ids: readonly string[]) {
  return t.database.db
    .selectFrom('relay_jobs')
    .select(['id', 'state', 'attempts', 'last_error', 'payload'])
    .where('message_id', 'in', ids)
    .orderBy('id')
    .execute();
}

test('When a host stays paused past the retry schedule, then its relays are dead, tried or not, with why', async () => {
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
    const rows = await jobsOf(ids);
    return rows.length === ids.length && rows.every((row) => row.state === 'dead') && rows;
  }, 30_000);

  // The app saw requests only until the circuit opened (2 failures, plus those under way).
  const requests = app.received.filter((r) => ids.includes(r.messageId)).length;
  expect(requests).toBeGreaterThanOrEqual(2);
  expect(requests).toBeLessThanOrEqual(6);
  const reason = /not delivered within RELAY_RETRY_SCHEDULE/;
  for (const job of jobs) expect(job.last_error).toMatch(reason);
  // A relay that was tried keeps what its host answered.
  const tried = jobs.filter((job) => job.attempts > 0);
  expect(tried.length).toBeGreaterThan(0);
  for (const job of tried) expect(job.last_error).toMatch(/^HTTP 503; then /);
  // Dead as any other: its message text dropped, counted.
  for (const job of jobs) expect(job.payload?.toString() ?? '').not.toContain('Body=');
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/sw_status_relay_attempts_total\{outcome="dead"\} 12\b/);

  // Retried through the API, a relay gets a whole schedule again before it is overdue.
  const retried = jobs[0]!.id;
  await request(t.internalApp)
    .post(`/v1/relays/${retried}/retry`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`)
    .expect(200);
  await new Promise((resolve) => setTimeout(resolve, 400));
  const [again] = (await jobsOf(ids)).filter((job) => job.id === retried);
  expect(again?.state).toBe('pending');
  await eventually(async () => {
    const [job] = (await jobsOf(ids)).filter((row) => row.id === retried);
    return job?.state === 'dead';
  }, 30_000);
});
