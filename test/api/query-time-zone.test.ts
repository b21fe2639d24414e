import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { startOnNonUtcDatabase } from '../helpers/non-utc-app';
import { TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// The service must not depend on the database's TimeZone setting: a self-hosted PostgreSQL
// often takes the host's zone (timezone = 'America/New_York' in postgresql.conf).

let app: Awaited<ReturnType<typeof startOnNonUtcDatabase>>;
let t: TestApp;
beforeAll(async () => {
  app = await startOnNonUtcDatabase();
  t = app.t;
});
afterAll(async () => {
  await app?.close();
});

test('When the database is not on UTC and a message has a provider timestamp of year 1, then its history still reads (no 500)', async () => {
  // Go's zero time: what a provider's "no timestamp" looks like; callbacks accept years 1–9999.
  const id = randomUUID();
  const zero = new Date('0001-01-01T00:00:00Z');
  const receivedAt = new Date('2026-11-20T10:00:00.123Z');
  await recordEvents(t.database.db, [
    statusEvent('sent', { messageId: id, providerTimestamp: zero, receivedAt }),
  ]);
  const res = await request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(200);
  expect(res.body.history).toEqual([
    expect.objectContaining({
      provider_timestamp: '0001-01-01T00:00:00.000Z',
      received_at: '2026-11-20T10:00:00.123Z',
    }),
  ]);
});
