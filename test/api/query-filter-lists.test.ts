import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// A filter list as dashboards build it: from a multi-select or a saved view, where a value can
// come twice. A list is a set: the same value twice means what it means once.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When a filter list repeats a value more often than there are values, then it filters as the value once', async () => {
  const failed = randomUUID();
  const native = randomUUID();
  const at = new Date('2026-09-01T12:00:00Z');
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: failed, api: 'cxml', receivedAt: at }),
    statusEvent('delivered', { messageId: native, api: 'native', receivedAt: at }),
  ]);
  const window = 'created_since=2026-09-01&created_until=2026-09-02';

  const byApi = await get(`/v1/messages?api=native,native,native&${window}`).expect(200);
  expect(byApi.body.data.map((m: { id: string }) => m.id)).toEqual([native]);

  const status = Array.from({ length: 11 }, () => 'failed').join(',');
  const byStatus = await get(`/v1/messages?status=${status}&${window}`).expect(200);
  expect(byStatus.body.data.map((m: { id: string }) => m.id)).toEqual([failed]);

  const codes = Array.from({ length: 51 }, () => '30003').join(',');
  await get(`/v1/messages?error_code=${codes}`).expect(200);

  const stats = await get(`/v1/stats?api=cxml,cxml,cxml&${window}`).expect(200);
  expect(stats.body).toMatchObject({ total: 1, by_status: { failed: 1, delivered: 0 } });
});

test('When a filter list names more different values than allowed, then the answer is still a 400', async () => {
  const codes = Array.from({ length: 51 }, (_, k) => String(30000 + k)).join(',');
  const res = await get(`/v1/messages?error_code=${codes}`).expect(400);
  expect(res.body.error.details).toEqual([
    expect.objectContaining({ path: 'error_code', message: expect.stringMatching(/50/) }),
  ]);
});
