import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { startTappedProxy } from './support';
import type { CannedResponse, TappedProxy } from './support';

/**
 * The native API has no deletion (RESEARCH §3.2: only create and update under
 * `/api/messaging/messages`): whatever SignalWire answers a native DELETE — a 404 by its
 * routing, or nothing in time (504, outcome unknown) — it still holds the message, so the
 * stored text (STORE_BODY=true) stays. The proxy read the 404 as "already deleted", and the
 * unknown outcome as "may have been deleted", and erased it. Found by review.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTnativedelete';
const AUTH = basicAuthHeader(PROJECT, TOKEN);

let sim: RunningSimulator;
let stack: TappedProxy;
/**
 * When set, SignalWire answers a DELETE (404) only when the test lets it (lateAnswer), after the
 * proxy's timeout.
 */
let slowDelete = false;
let lateAnswer: () => void = () => undefined;

beforeAll(async () => {
  sim = await startSimulator({
    stepDelayMs: 3_600_000,
    credentials: { projectId: PROJECT, token: TOKEN },
  });
  stack = await startTappedProxy(
    async (req): Promise<CannedResponse> => {
      if (req.method === 'DELETE' && slowDelete) {
        return await new Promise((r) => (lateAnswer = () => r({ status: 404, body: '' })));
      }
      const res = await fetch(`${sim.url}${req.path}`, {
        method: req.method,
        headers: {
          authorization: String(req.headers['authorization']),
          'content-type': String(req.headers['content-type']),
        },
        body: req.method === 'GET' || req.method === 'DELETE' ? undefined : req.body,
      });
      return {
        status: res.status,
        headers: { 'content-type': 'application/json' },
        body: await res.text(),
      };
    },
    // Far above a loopback answer: the sends and the 404 must be answered in time on a loaded
    // machine; the late answer is held by the test, however long the timeout.
    { STORE_BODY: 'true', SIGNALWIRE_TIMEOUT_MS: '5000' },
  );
});
afterAll(async () => {
  await stack.close();
  await sim.close();
});

/** A native message sent through the proxy, its text stored; then its DELETE's status. */
async function sendThenDelete(text: string): Promise<{ id: string; deleted: number }> {
  const sent = await request(stack.t.internalApp)
    .post('/api/messaging/messages')
    .set('Authorization', AUTH)
    .send({ to: '+15557654321', from: '+15551234567', body: text });
  expect(sent.status).toBe(201);
  const id = sent.body.id as string;
  const deleted = await request(stack.t.internalApp)
    .delete(`/api/messaging/messages/${id}`)
    .set('Authorization', AUTH);
  return { id, deleted: deleted.status };
}

async function storedText(id: string): Promise<unknown> {
  const stored = await request(stack.t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  return stored.body.body;
}

test('When an app deletes a native message and SignalWire answers 404 (the native API has no deletion), then its text is kept here', async () => {
  slowDelete = false;
  const { id, deleted } = await sendThenDelete('native secret 5151');
  expect(deleted).toBe(404);
  // SignalWire still holds it, with its text.
  expect(sim.messages.find((m) => m.id === id)!.body).toBe('native secret 5151');
  expect(await storedText(id)).toBe('native secret 5151');
});

test('When an app deletes a native message and SignalWire’s answer comes too late (504), then its text is kept here', async () => {
  slowDelete = true;
  const { id, deleted } = await sendThenDelete('native secret 7272');
  expect(deleted).toBe(504);
  // Past the late answer: nothing it brings may erase the text either.
  lateAnswer();
  await eventually(
    () => stack.tap.requests.some((r) => r.method === 'DELETE' && r.response?.status === 404),
    'the late answer sent',
  );
  expect(sim.messages.find((m) => m.id === id)!.body).toBe('native secret 7272');
  expect(await storedText(id)).toBe('native secret 7272');
}, 30_000);
