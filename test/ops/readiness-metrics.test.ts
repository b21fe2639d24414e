import request from 'supertest';
import { createInternalApp } from '../../src/app';
import { createDb } from '../../src/db/database';
import { freePort } from '../../src/db/free-port';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { createMetrics } from '../../src/metrics/metrics';
import { TEST_API_TOKEN, createTestApp, testConfig } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sample, scrape } from './scrape';

/** The series the readiness-flapping alert and the 5xx panels read (k8s/components/monitoring). */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** An internal app whose database is a port nothing listens on: the query API answers 503. */
async function withUnreachableDatabase() {
  const { db } = createDb(`postgres://sw@127.0.0.1:${await freePort()}/sw_status`);
  const app = createInternalApp({
    config: testConfig(),
    logger: createLogger('silent'),
    db,
    recorder: directRecorder(db),
    lifecycle: { draining: false },
    metrics: createMetrics({ processMetrics: false }),
  });
  return { app, db };
}

test('When /readyz changes its answer, then sw_status_ready follows it and each change is counted', async () => {
  await request(t.publicApp).get('/readyz').expect(200);
  let text = await scrape(t.internalApp);
  expect(sample(text, 'sw_status_ready')).toBe(1);
  expect(sample(text, 'sw_status_readiness_changes_total')).toBe(0);

  t.deps.lifecycle.draining = true;
  await request(t.publicApp).get('/readyz').expect(503);
  await request(t.publicApp).get('/readyz').expect(503);
  t.deps.lifecycle.draining = false;
  await request(t.internalApp).get('/readyz').expect(200);

  text = await scrape(t.internalApp);
  expect(sample(text, 'sw_status_ready')).toBe(1);
  // ready → not ready → ready: two changes, the repeated 503 is not one.
  expect(sample(text, 'sw_status_readiness_changes_total')).toBe(2);
});

test('When the service answers a 5xx of its own, then it is counted by listener and sender, from 0', async () => {
  const { app, db } = await withUnreachableDatabase();
  const errors = (text: string, listener: string, sender: string) =>
    sample(text, 'sw_status_http_server_errors_total', { listener, sender });
  try {
    let text = await scrape(app);
    expect(errors(text, 'public', 'authenticated')).toBe(0);
    expect(errors(text, 'public', 'unverified')).toBe(0);
    expect(errors(text, 'internal', 'authenticated')).toBe(0);
    await request(app)
      .get('/v1/stats')
      .set('Authorization', `Bearer ${TEST_API_TOKEN}`)
      .expect(503);
    text = await scrape(app);
    expect(errors(text, 'internal', 'authenticated')).toBe(1);
    expect(errors(text, 'public', 'authenticated')).toBe(0);
    expect(errors(text, 'public', 'unverified')).toBe(0);
  } finally {
    await db.destroy();
  }
});

test('When /readyz finds the database unreachable, then sw_status_database_up is 0 (a pod stays ready through an outage, so sw_status_ready cannot tell); 1 when reachable; unknown before the first probe', async () => {
  await request(t.publicApp).get('/readyz').expect(200);
  expect(sample(await scrape(t.internalApp), 'sw_status_database_up')).toBe(1);

  const { app, db } = await withUnreachableDatabase();
  try {
    expect(sample(await scrape(app), 'sw_status_database_up')).toBeNaN();
    await request(app).get('/readyz');
    expect(sample(await scrape(app), 'sw_status_database_up')).toBe(0);
  } finally {
    await db.destroy();
  }
});
