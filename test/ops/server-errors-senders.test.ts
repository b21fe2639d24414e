import { randomUUID } from 'node:crypto';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { exchangeRaw } from '../helpers/raw-http';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { alertRules } from './alert-rules';
import { withBodyBudgetHeld } from './body-budget-held';
import { sample } from './scrape';

/**
 * SwStatusServerErrors (k8s/components/monitoring/prometheusrule.yaml) warns on the service's
 * own 5xx, read from sw_status_http_server_errors_total with the rule's own label matchers.
 * Anyone can reach the public listener: an anonymous client holding the large-body budget gets
 * its own requests refused 503 unread, which must not count in what the rule reads; SignalWire's
 * callback refused the same way must. Each scenario runs the real public app on a real socket
 * (withBodyBudgetHeld) with a fresh registry, so every counter's value is its increase.
 */

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ TRUST_PROXY: 'loopback' });
});
afterAll(async () => {
  await t.close();
});

const SERIES = 'sw_status_http_server_errors_total';
const SIGNALWIRE = '198.51.100.10';
const ANONYMOUS = '203.0.113.77';

/** The `label="value"` matchers SwStatusServerErrors puts on SERIES. */
function ruleMatchers(): Record<string, string> {
  const rule = alertRules().find((r) => r.alert === 'SwStatusServerErrors');
  const selector = new RegExp(`${SERIES}(?:\\{([^}]*)\\})?`).exec(rule!.expr);
  expect(selector).not.toBeNull();
  const matchers = [...(selector![1] ?? '').matchAll(/(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"/g)];
  // Only equality is summed below: a rule that starts using another operator needs this updated.
  expect(matchers.every((m) => m[2] === '=')).toBe(true);
  return Object.fromEntries(matchers.map((m) => [m[1]!, m[3]!]));
}

/** The public listener's 5xx as SwStatusServerErrors reads them. */
function publicErrorsTheAlertReads(text: string): number {
  const wanted = { ...ruleMatchers(), listener: 'public' };
  let total = 0;
  for (const line of text.split('\n')) {
    const match = new RegExp(`^${SERIES}\\{(.*)\\} (\\S+)$`).exec(line);
    if (!match) continue;
    const labels = Object.fromEntries(
      [...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
    );
    if (Object.entries(wanted).every(([key, value]) => labels[key] === value)) {
      total += Number(match[2]);
    }
  }
  return total;
}

function signedNative(padding = 0) {
  const body = JSON.stringify({ ...nativeFields({ id: randomUUID() }), pad: 'x'.repeat(padding) });
  const signature = signJsonBody(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
    body,
  );
  return { body, signature };
}

/** A POST to /callbacks/native from `address` on a connection of its own, closed after. */
function callback(port: number, address: string, body: string, signature: string) {
  return exchangeRaw(
    port,
    'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n' +
      `X-Forwarded-For: ${address}\r\nContent-Type: application/json\r\n` +
      `X-SignalWire-Signature: ${signature}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

test('When an anonymous client holding the large-body budget gets its own requests refused 503, then they count as sender="unverified", not in what SwStatusServerErrors reads', async () => {
  const junk = `{"x":"${'y'.repeat(20_000)}"}`;
  const text = await withBodyBudgetHeld(t, ANONYMOUS, async (port) => {
    for (let i = 0; i < 5; i++) {
      expect((await callback(port, ANONYMOUS, junk, 'forged')).status).toBe(503);
    }
  });
  expect(sample(text, SERIES, { listener: 'public', sender: 'unverified' })).toBe(5);
  expect(sample(text, SERIES, { listener: 'public', sender: 'authenticated' })).toBe(0);
  expect(publicErrorsTheAlertReads(text)).toBe(0);
});

test('When SignalWire’s own large callback is refused 503 for the budget, then it counts as sender="authenticated", in what SwStatusServerErrors reads', async () => {
  const text = await withBodyBudgetHeld(t, ANONYMOUS, async (port) => {
    // SignalWire's address authenticates a callback, as it does every minute it has traffic...
    const small = signedNative();
    expect((await callback(port, SIGNALWIRE, small.body, small.signature)).status).toBe(200);
    // ...then a callback of its own larger than SMALL_CALLBACK_BYTES finds the budget full.
    const large = signedNative(20_000);
    expect((await callback(port, SIGNALWIRE, large.body, large.signature)).status).toBe(503);
  });
  expect(sample(text, SERIES, { listener: 'public', sender: 'authenticated' })).toBe(1);
  expect(sample(text, SERIES, { listener: 'public', sender: 'unverified' })).toBe(0);
  expect(publicErrorsTheAlertReads(text)).toBe(1);
});
