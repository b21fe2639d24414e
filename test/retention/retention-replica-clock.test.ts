import { randomUUID } from 'node:crypto';
import { Registry } from 'prom-client';
import request from 'supertest';
import { createPublicApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { createRetention } from '../../src/retention/retention';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Retention judges age by the database's clock, not by the clock of the replica running the
 * round: one whose clock is days ahead (a VM resumed, a bad RTC) removed messages whose
 * callbacks came seconds ago, and one days behind kept what had expired.
 */
const DAY = 86_400_000;
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ RETENTION_DAYS: '7' });
});
afterAll(async () => {
  jest.useRealTimers();
  await t.close();
});

const getMessage = (id: string) =>
  request(t.internalApp).get(`/v1/messages/${id}`).auth(TEST_API_TOKEN, { type: 'bearer' });

/** A round run by a replica whose wall clock is `offsetMs` off (the monotonic clock is not). */
async function roundOnReplicaOff(offsetMs: number) {
  const retention = createRetention({
    db: t.database.db,
    logger: createLogger('silent'),
    registry: new Registry(),
    options: { retentionDays: 7, pauseMs: 0 },
  })!;
  jest.useFakeTimers({
    now: Date.now() + offsetMs,
    advanceTimers: true,
    // Only Date: the timers and the monotonic clock run as ever.
    doNotFake: [
      'hrtime',
      'nextTick',
      'performance',
      'queueMicrotask',
      'requestAnimationFrame',
      'cancelAnimationFrame',
      'requestIdleCallback',
      'cancelIdleCallback',
      'setImmediate',
      'clearImmediate',
      'setInterval',
      'clearInterval',
      'setTimeout',
      'clearTimeout',
    ],
  });
  try {
    return await retention.runOnce();
  } finally {
    jest.useRealTimers();
  }
}

/** A callback received by a replica whose clock is `offsetMs` off: its last activity then. */
async function receivedBy(offsetMs: number): Promise<string> {
  const app = createPublicApp({ ...t.deps, clock: () => new Date(Date.now() + offsetMs) });
  const id = randomUUID();
  expect((await postCxml(app, cxmlFields({ MessageSid: id, MessageStatus: 'sent' }))).status).toBe(
    200,
  );
  expect((await getMessage(id)).status).toBe(200);
  return id;
}

test('When a replica whose clock is 8 days ahead runs a round, then a message whose callback came a second ago is kept', async () => {
  const id = await receivedBy(0);
  const removed = await roundOnReplicaOff(8 * DAY);
  expect(removed.messages).toBe(0);
  expect((await getMessage(id)).status).toBe(200);
});

test('When a replica whose clock is 8 days behind runs a round, then a message last active 8 days ago is removed', async () => {
  const id = await receivedBy(-8 * DAY);
  const removed = await roundOnReplicaOff(-8 * DAY);
  expect(removed.messages).toBeGreaterThanOrEqual(1);
  expect((await getMessage(id)).status).toBe(404);
});
