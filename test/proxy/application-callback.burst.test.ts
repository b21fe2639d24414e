import { createApplicationCallbacks } from '../../src/proxy/application-callback';
import { createSignalWireClient } from '../../src/proxy/signalwire-client';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startUpstreamTap } from './support';
import type { CannedResponse, TappedRequest, UpstreamTap } from './support';

/**
 * A burst of sends naming one Application (proxy/application-callback.ts): the sends of a
 * burst start together, before any read of the Application has come back.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const APP_SID = '2e7d8c3a-5b1f-4f6e-9a0b-1c2d3e4f5a6b';
const AUTH = basicAuthHeader(PROJECT, 'PTtoken');

let answer: (req: TappedRequest) => CannedResponse;
let tap: UpstreamTap;
beforeAll(async () => {
  tap = await startUpstreamTap((req) => answer(req));
});
afterAll(async () => {
  await tap.close();
});

const json = (status: number, body: unknown): CannedResponse => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

function reader() {
  const client = createSignalWireClient({ baseUrl: tap.url, timeoutMs: 15_000 });
  return createApplicationCallbacks(client);
}

test('When twenty sends naming one Application start at once, then SignalWire is asked for it once and every send gets its URL', async () => {
  answer = () => json(200, { message_status_callback: 'https://app.example.com/status' });
  const applications = reader();
  const before = tap.requests.length;
  const found = await Promise.all(
    Array.from({ length: 20 }, () => applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)),
  );
  expect(found).toEqual(Array(20).fill({ ok: true, url: 'https://app.example.com/status' }));
  expect(tap.requests.length - before).toBe(1);
});

test('When sends with other credentials start during a read, then they are not answered from it', async () => {
  answer = (req) =>
    req.headers.authorization === AUTH
      ? json(200, { message_status_callback: 'https://app.example.com/status' })
      : json(401, { code: 20003, message: 'Authentication Error', status: 401 });
  const applications = reader();
  const [good, bad] = await Promise.all([
    applications.lookup(PROJECT, APP_SID, AUTH, PROJECT),
    applications.lookup(PROJECT, APP_SID, basicAuthHeader(PROJECT, 'wrong'), PROJECT),
  ]);
  expect(good).toEqual({ ok: true, url: 'https://app.example.com/status' });
  expect(bad).toEqual({ ok: false, reason: 'SignalWire answered 401' });
});
