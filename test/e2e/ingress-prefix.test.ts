import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import { formPairs, startTappedProxy } from '../proxy/support';
import type { TappedProxy } from '../proxy/support';

/**
 * Behind an ingress that serves sw-status under a path prefix and strips it: PUBLIC_BASE_URL
 * is written with the prefix, a trailing slash, the default port and upper-case letters, as an
 * operator may write it. SignalWire is given the callback URL the proxy injects and signs that
 * URL as given; the service receives the path without the prefix. The token route still
 * matches, and where the token no longer authenticates (a callback-token secret rotated away)
 * the signature SignalWire made for the injected URL does.
 */

const WRITTEN = 'https://Hooks.Example.com:443/sw-status/';
const PREFIX = 'https://Hooks.Example.com:443/sw-status';
const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTingressprefixtoken');

let sim: RunningSimulator;
let stack: TappedProxy;
/** Another replica whose callback-token secret no longer verifies the proxy's tokens. */
let rotated: TestApp;

beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  stack = await startTappedProxy({ forwardTo: sim.url }, { PUBLIC_BASE_URL: WRITTEN });
  rotated = await createTestApp(
    { PUBLIC_BASE_URL: WRITTEN, CALLBACK_TOKEN_SECRET: 'another-callback-token-secret-0123' },
    { database: stack.t.database },
  );
});
afterAll(async () => {
  await rotated.close();
  await stack.close();
  await sim.close();
});

/** What the ingress forwards for a URL SignalWire calls: the path after the prefix. */
function stripped(url: string): string {
  expect(url.startsWith(`${PREFIX}/`)).toBe(true);
  return url.slice(PREFIX.length);
}

test('When the proxy injects a callback URL under a prefixed PUBLIC_BASE_URL, then the stripped path is the token route and SignalWire’s signature for the injected URL verifies', async () => {
  const sent = await request(stack.t.internalApp)
    .post(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`)
    .set('Authorization', AUTH)
    .type('form')
    .send({ To: '+15557654321', From: '+15551234567', Body: 'hi' });
  expect(sent.status).toBe(201);
  const forwarded = formPairs(stack.tap.requests.at(-1)!.body);
  const injected = forwarded.find(([name]) => name === 'StatusCallback')![1];
  expect(injected).toMatch(
    /^https:\/\/Hooks\.Example\.com:443\/sw-status\/callbacks\/cxml\/[^/]+$/,
  );
  const path = stripped(injected);

  const fields = cxmlFields({ MessageSid: (sent.body as { sid: string }).sid });
  // The token authenticates on the replica that minted it.
  await request(stack.t.publicApp).post(path).type('form').send(fields).expect(200);
  // Where it does not, SignalWire's signature over the injected URL does, in either spelling
  // of the default port and of the host.
  for (const url of [
    injected,
    injected.replace(':443', ''),
    injected.replace('Hooks.Example.com', 'hooks.example.com'),
    injected.replace('Hooks.Example.com:443', 'hooks.example.com'),
  ]) {
    const again = { ...fields, MessageStatus: 'sent' };
    await request(rotated.publicApp)
      .post(path)
      .type('form')
      .set('X-SignalWire-Signature', signFormParams(TEST_SIGNING_KEY, url, Object.entries(again)))
      .send(again)
      .expect(200);
  }
  await request(rotated.publicApp).post(path).type('form').send(fields).expect(403);
});

test('When a native callback URL is configured under the prefix directly, then SignalWire’s signature for it verifies once the ingress strips the prefix', async () => {
  const body = JSON.stringify(nativeFields());
  const url = `${PREFIX}/callbacks/native?tenant=acme`;
  await request(stack.t.publicApp)
    .post(stripped(url))
    .set('Content-Type', 'application/json')
    .set('X-SignalWire-Signature', signJsonBody(TEST_SIGNING_KEY, url, body))
    .send(body)
    .expect(200);
});
