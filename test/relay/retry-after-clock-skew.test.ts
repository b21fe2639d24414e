import { sql } from 'kysely';
import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { seedProxiedMessage } from './support';

/**
 * POST /v1/relays/:id/retry on a relay a worker holds answers 409 `being_attempted` with a
 * Retry-After of the lease's remaining time. The lease is stamped on the database's clock
 * (relay.repository.ts: now() + lease), and the remaining time was read against this replica's
 * wall clock: a replica 90 s ahead of the database said "1 s" for a lease with 30 s left (a
 * runbook script hammered it), one 90 s behind said "120 s". Found by review.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());
afterEach(() => jest.restoreAllMocks());

async function heldRelay(): Promise<string> {
  const id = await seedProxiedMessage(t.database.db, 'cxml', 'http://app.example:8080/status');
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'delivered' })).expect(
    200,
  );
  const job = await t.database.db
    .selectFrom('relay_jobs')
    .select('id')
    .where('message_id', '=', id)
    .executeTakeFirstOrThrow();
  // A worker holds it: its lease has 30 s left on the database's clock.
  await sql`UPDATE relay_jobs SET lease_until = now() + interval '30 seconds'
    WHERE id = ${job.id}`.execute(t.database.db);
  return String(job.id);
}

test.each([
  ['ahead of', 90_000],
  ['behind', -90_000],
])(
  'When the replica’s clock is 90 s %s the database’s, then a retry refused while the lease has 30 s left says to come back in about 30 s',
  async (_how, skewMs) => {
    const id = await heldRelay();
    const realNow = Date.now.bind(Date);
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() + skewMs);
    const refused = await request(t.internalApp)
      .post(`/v1/relays/${id}/retry`)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(409);
    expect(refused.body.error.code).toBe('being_attempted');
    const seconds = Number(refused.headers['retry-after']);
    expect(seconds).toBeGreaterThanOrEqual(25);
    expect(seconds).toBeLessThanOrEqual(31);
  },
);
