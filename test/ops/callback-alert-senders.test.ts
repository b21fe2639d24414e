import { randomUUID } from 'node:crypto';
import type { Express } from 'express';
import request from 'supertest';
import { createInternalApp, createPublicApp } from '../../src/app';
import type { AppDeps } from '../../src/app';
import { createMetrics } from '../../src/metrics/metrics';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { exchangeRaw } from '../helpers/raw-http';
import { withBodyBudgetHeld } from './body-budget-held';

/**
 * k8s/components/monitoring/prometheusrule.yaml pages (severity: critical) on two ratios over
 * SignalWire's callbacks (sender="authenticated"), whatever else reaches the public listener:
 *   SwStatusCallbacksRateLimited:  rate_limited_total{limiter="public",sender="authenticated"} / ingest_duration_seconds_count{sender="authenticated"} > 0.01
 *   SwStatusCallbackServerErrors:  ingest_duration_seconds_count{sender="authenticated",code=~"5.."} / ingest_duration_seconds_count{sender="authenticated"} > 0.01
 * Here the ratios are computed from the real service's samples as the rules read them: an
 * anonymous client that never authenticated neither makes them cross the line nor hides
 * SignalWire's 503s under it. Counters start at 0 in a fresh registry, so each increase is the
 * scraped value.
 */

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ TRUST_PROXY: 'loopback', RATE_LIMIT_PUBLIC_PER_MINUTE: '20' });
});
afterAll(async () => {
  await t.close();
});

function sum(text: string, re: RegExp): number {
  return text
    .split('\n')
    .filter((l) => re.test(l))
    .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const AUTHENTICATED_COUNT = /^sw_status_ingest_duration_seconds_count\{[^}]*sender="authenticated"/;
const AUTHENTICATED_5XX =
  /^sw_status_ingest_duration_seconds_count\{[^}]*code="5\d\d"[^}]*sender="authenticated"/;

function signedNative(id: string) {
  const body = JSON.stringify(nativeFields({ id }));
  const signature = signJsonBody(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
    body,
  );
  return { body, signature };
}

/** SignalWire: 10 genuine signed callbacks from its own address, each answered `status`. */
async function signalWireCallbacks(pub: Express, status: number): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const { body, signature } = signedNative(randomUUID());
    const res = await request(pub)
      .post('/callbacks/native')
      .set('X-Forwarded-For', '198.51.100.10')
      .set('Content-Type', 'application/json')
      .set('X-SignalWire-Signature', signature)
      .send(body);
    expect(res.status).toBe(status);
  }
}

test('When an anonymous client goes past RATE_LIMIT_PUBLIC_PER_MINUTE on any path, then SwStatusCallbacksRateLimited’s ratio stays under 1 %: SignalWire was refused nothing', async () => {
  const metrics = createMetrics({ processMetrics: false });
  const deps: AppDeps = { ...t.deps, metrics };
  const pub = createPublicApp(deps);
  const internal = createInternalApp(deps);
  // SignalWire: 10 genuine signed callbacks from its own address, all within the limit.
  await signalWireCallbacks(pub, 200);
  // An anonymous client, never authenticated, requests 30 times any path of the public listener.
  let refused = 0;
  for (let i = 0; i < 30; i++) {
    const res = await request(pub).get(`/anything-${i}`).set('X-Forwarded-For', '203.0.113.66');
    if (res.status === 429) refused++;
  }
  expect(refused).toBeGreaterThan(0);
  const text = (await request(internal).get('/metrics')).text;
  const limited = sum(
    text,
    /^sw_status_rate_limited_total\{limiter="public",sender="authenticated"\}/,
  );
  const callbacks = sum(text, AUTHENTICATED_COUNT);
  // The anonymous client's refusals are counted, as its own.
  expect(sum(text, /^sw_status_rate_limited_total\{limiter="public",sender="unverified"\}/)).toBe(
    refused,
  );
  const alertRatio = limited / callbacks;
  // SignalWire was refused nothing: the critical alert's ratio must stay under its 1 %.
  expect(alertRatio).toBeLessThanOrEqual(0.01);
});

test('When an anonymous client holds the large-body budget and gets 503s, then SwStatusCallbackServerErrors’s ratio stays under 1 %: SignalWire’s callbacks were all stored', async () => {
  const text = await withBodyBudgetHeld(t, '203.0.113.77', async (port) => {
    // SignalWire: 10 genuine signed callbacks, all stored.
    for (let i = 0; i < 10; i++) {
      const { body, signature } = signedNative(randomUUID());
      const answer = await exchangeRaw(
        port,
        'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n' +
          `X-Forwarded-For: 198.51.100.10\r\nContent-Type: application/json\r\nX-SignalWire-Signature: ${signature}\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      expect(answer.status).toBe(200);
    }
    // The anonymous client's own large requests (a forged signature header, nothing else).
    const junk = `{"x":"${'y'.repeat(20_000)}"}`;
    for (let i = 0; i < 5; i++) {
      await exchangeRaw(
        port,
        'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n' +
          'X-Forwarded-For: 203.0.113.77\r\nContent-Type: application/json\r\nX-SignalWire-Signature: forged\r\n' +
          `Content-Length: ${junk.length}\r\n\r\n${junk}`,
      );
    }
  });
  const fivexx = sum(text, AUTHENTICATED_5XX);
  const callbacks = sum(text, AUTHENTICATED_COUNT);
  expect(callbacks).toBe(10);
  // Every genuine callback was stored: the critical alert's ratio must stay under its 1 %.
  expect(fivexx / callbacks).toBeLessThanOrEqual(0.01);
});

test('When every genuine callback is answered 503 while an anonymous client floods refused requests, then SwStatusCallbackServerErrors’s ratio is over 1 %', async () => {
  const metrics = createMetrics({ processMetrics: false });
  // PostgreSQL unreachable and no spool: SignalWire's callbacks cannot be made durable (503).
  const failing = {
    record: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')),
    drain: () => Promise.resolve(),
  };
  const deps: AppDeps = { ...t.deps, metrics, recorder: failing };
  const pub = createPublicApp(deps);
  const internal = createInternalApp(deps);
  await signalWireCallbacks(pub, 503);
  // An anonymous client's unsigned callbacks: refused (401, then 429), never stored.
  for (let i = 0; i < 1000; i++) {
    await request(pub)
      .post('/callbacks/cxml')
      .set('X-Forwarded-For', '203.0.113.88')
      .type('form')
      .send('a=b');
  }
  const text = (await request(internal).get('/metrics')).text;
  const fivexx = sum(text, AUTHENTICATED_5XX);
  const callbacks = sum(text, AUTHENTICATED_COUNT);
  // SignalWire got a 503 for every callback it sent: the critical alert must fire (> 1 %).
  expect(fivexx / callbacks).toBeGreaterThan(0.01);
});
