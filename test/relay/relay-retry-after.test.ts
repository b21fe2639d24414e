import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, relayJobWhen, seedProxiedMessage } from './support';
import type { Answer, RelayTestApp } from './support';

/**
 * An app that is rate limiting, or down for maintenance, answers 429 or 503 with Retry-After.
 * The relay ignored the header and came back on the next step of RELAY_RETRY_SCHEDULE (10 s by
 * default), spending the job's few attempts against a host that had said when to come back:
 * an app that asked for an hour saw the callback again after 10 s, 1 min, 5 min, 30 min… Found
 * by review. Now the wait is the longer of the schedule's step and the Retry-After (delta-seconds
 * or an HTTP-date; garbage ignored), at most a day, and it is still one attempt.
 */

let t: RelayTestApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '100ms,100ms,100ms' });
  t.startWorker();
});
afterAll(() => t.close());

/**
 * A relayed callback whose app answers `first` and then 200; its job after the first answer.
 * Each test has an app of its own (its own host): 429s and 503s count against their host, and
 * five in a row would pause it (the circuit breaker) for the tests after.
 */
async function answeredFirst(first: Answer) {
  const app = await t.customerApp();
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/limited'));
  app.behave(id, (n) => (n === 1 ? first : { status: 200 }));
  const before = Date.now();
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  const job = await relayJobWhen(t.database.db, id, (row) => row.attempts === 1);
  const requests = () => app.received.filter((r) => r.messageId === id).length;
  return { id, job, waitedMs: job.next_attempt_at.getTime() - before, requests };
}

test.each([429, 503])(
  'When the app answers %s with Retry-After: 3600, then the relay is not sent again before the hour',
  async (status) => {
    const { job, waitedMs, requests } = await answeredFirst({
      status,
      headers: { 'Retry-After': '3600' },
    });
    expect(job.state).toBe('pending');
    expect(job.last_status).toBe(status);
    expect(waitedMs).toBeGreaterThan(3_590_000);
    expect(waitedMs).toBeLessThan(3_610_000);
    // Three of the schedule's steps pass: nothing is sent meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(requests()).toBe(1);
  },
);

test('When the app answers 503 with an HTTP-date two hours after its own Date, then the relay waits two hours, whatever the app’s clock says', async () => {
  // The app's clock is an hour behind: read against ours, its date is only an hour away.
  const appNow = Date.now() - 3_600_000;
  const { waitedMs } = await answeredFirst({
    status: 503,
    headers: {
      Date: new Date(appNow).toUTCString(),
      'Retry-After': new Date(appNow + 7_200_000).toUTCString(),
    },
  });
  expect(waitedMs).toBeGreaterThan(7_190_000);
  expect(waitedMs).toBeLessThan(7_210_000);
});

test('When the app asks for a year, then the relay waits a day', async () => {
  const { waitedMs } = await answeredFirst({
    status: 429,
    headers: { 'Retry-After': String(365 * 86_400) },
  });
  expect(waitedMs).toBeGreaterThan(86_390_000);
  expect(waitedMs).toBeLessThan(86_410_000);
});

test.each(['soon', '-5', '2030-01-01'])(
  'When the app’s Retry-After is garbage (%s), then the schedule’s step is kept and the relay is delivered on the next attempt',
  async (garbage) => {
    const { id, requests } = await answeredFirst({
      status: 429,
      headers: { 'Retry-After': garbage },
    });
    await eventually(() => requests() === 2);
    const job = await relayJobWhen(t.database.db, id, (row) => row.state === 'delivered');
    expect(job.attempts).toBe(2);
  },
);
