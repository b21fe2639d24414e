import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { createInternalApp, createPublicApp } from '../../src/app';
import type { AppDeps } from '../../src/app';
import { createMetrics } from '../../src/metrics/metrics';
import { postNative, nativeFields } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * sw_status_ingest_duration_seconds: "Callback request received to answered; code 200 means
 * durably committed" (metrics.ts; README "200 = durably committed"). The dashboard's ingest
 * latency panels (p50/p99) read code="200" only. An OPTIONS on a callback path commits nothing,
 * needs no credentials, and is answered in microseconds.
 */
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t.close();
});

test('When anonymous OPTIONS on callback paths are answered 200, then ingest_duration_seconds{code="200"} counts only the callback made durable', async () => {
  const metrics = createMetrics({ processMetrics: false });
  const deps: AppDeps = { ...t.deps, metrics };
  const pub = createPublicApp(deps);
  const internal = createInternalApp(deps);
  expect((await postNative(pub, nativeFields({ id: randomUUID() }))).status).toBe(200);
  for (let i = 0; i < 20; i++) {
    const res = await request(pub).options('/callbacks/native/anything');
    expect(res.status).toBe(200);
  }
  const text = (await request(internal).get('/metrics')).text;
  const durable = text
    .split('\n')
    .filter((l) => /^sw_status_ingest_duration_seconds_count\{[^}]*code="200"/.test(l))
    .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  // One callback was committed.
  expect(durable).toBe(1);
});
