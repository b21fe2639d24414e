import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { claimDueMessages, recordStep } from '../../src/reconcile/reconcile.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * What reconciliation knows about a message is part of its answer on the query API, and a
 * dashboard polling with If-None-Match sees it change: a lookup writes only the sweep's
 * columns (src/reconcile/reconcile.repository.ts), never updated_at, so an ETag made from
 * updated_at alone kept answering 304 while the message became stuck.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string, etag?: string) => {
  const req = request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
  return etag === undefined ? req : req.set('If-None-Match', etag);
};

/** The sweep's own statements: claim the message, then record a lookup's outcome. */
async function lookedUp(id: string, step: number, stuck: boolean, error: string | null) {
  const claimed = await claimDueMessages(t.database.db, {
    limit: 10,
    leaseMs: 60_000,
    schedule: [0, 0],
    projects: ['p-sweep'],
  });
  const message = claimed.find((m) => m.id === id);
  expect(message).toBeDefined();
  await recordStep(t.database.db, message!, step, stuck, error);
}

test('When reconciliation looks a message up, then its sweep state is in the answer and the ETag changes', async () => {
  const id = randomUUID();
  const receivedAt = new Date(Date.now() - 60_000);
  await recordEvents(t.database.db, [
    statusEvent('sent', { messageId: id, projectId: 'p-sweep', receivedAt }),
  ]);
  const fresh = await get(`/v1/messages/${id}`).expect(200);
  expect(fresh.body).toMatchObject({
    stuck: false,
    sweep_step: 0,
    sweep_checked_at: null,
    sweep_error: null,
  });
  const listed = await get('/v1/messages?stuck=false').expect(200);

  await lookedUp(id, 1, false, 'not_found');
  const looked = await get(`/v1/messages/${id}`, fresh.headers['etag']).expect(200);
  expect(looked.body).toMatchObject({ stuck: false, sweep_step: 1, sweep_error: 'not_found' });
  expect(Date.parse(looked.body.sweep_checked_at)).not.toBeNaN();
  expect(looked.headers['etag']).not.toBe(fresh.headers['etag']);
  await get(`/v1/messages/${id}`, looked.headers['etag']).expect(304);
  const relisted = await get('/v1/messages?stuck=false', listed.headers['etag']).expect(200);
  expect(relisted.body.data.find((m: { id: string }) => m.id === id)).toMatchObject({
    sweep_step: 1,
    sweep_error: 'not_found',
  });

  await lookedUp(id, 2, true, null);
  const stuck = await get(`/v1/messages/${id}`, looked.headers['etag']).expect(200);
  expect(stuck.body).toMatchObject({ stuck: true, sweep_step: 2, sweep_error: null });
  const page = await get('/v1/messages?stuck=true').expect(200);
  expect(page.body.data.map((m: { id: string }) => m.id)).toEqual([id]);

  // A new event restarts the schedule: no longer stuck, no lookups since it.
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: id, projectId: 'p-sweep' }),
  ]);
  const moved = await get(`/v1/messages/${id}`, stuck.headers['etag']).expect(200);
  expect(moved.body).toMatchObject({ status: 'delivered', stuck: false, sweep_step: 0 });
});
