import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { startTappedProxy } from './support';
import type { CannedResponse, TappedProxy } from './support';

/**
 * The native API has no deletion (RESEARCH §3.2): a native DELETE whose answer never comes in
 * time (504, outcome unknown) cannot have deleted anything at SignalWire either, so the stored
 * text (STORE_BODY=true) stays, as it does for a 404 (native-delete-404-keeps-text.test.ts).
 * Found by review.
 */
const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTnativedeleteslow';
const AUTH = basicAuthHeader(PROJECT, TOKEN);

let sim: RunningSimulator;
let stack: TappedProxy;

beforeAll(async () => {
  sim = await startSimulator({
    stepDelayMs: 3_600_000,
    credentials: { projectId: PROJECT, token: TOKEN },
  });
  stack = await startTappedProxy(
    async (req): Promise<CannedResponse> => {
      if (req.method === 'DELETE') {
        // SignalWire routes it nowhere (404), but answers after the proxy's timeout.
        return await new Promise((r) => setTimeout(() => r({ status: 404, body: '' }), 2_500));
      }
      const res = await fetch(`${sim.url}${req.path}`, {
        method: req.method,
        headers: {
          authorization: String(req.headers['authorization']),
          'content-type': String(req.headers['content-type']),
        },
        body: req.body,
      });
      return {
        status: res.status,
        headers: { 'content-type': 'application/json' },
        body: await res.text(),
      };
    },
    { STORE_BODY: 'true', SIGNALWIRE_TIMEOUT_MS: '1000' },
  );
});
afterAll(async () => {
  await stack.close();
  await sim.close();
});

test('When an app deletes a native message and SignalWire’s answer comes too late (504), then its text is kept here (the native API has no deletion)', async () => {
  const sent = await request(stack.t.internalApp)
    .post('/api/messaging/messages')
    .set('Authorization', AUTH)
    .send({ to: '+15557654321', from: '+15551234567', body: 'native secret 7272' });
  expect(sent.status).toBe(201);
  const id = sent.body.id as string;

  const deleted = await request(stack.t.internalApp)
    .delete(`/api/messaging/messages/${id}`)
    .set('Authorization', AUTH);
  expect(deleted.status).toBe(504);
  await new Promise((r) => setTimeout(r, 2_500));
  expect(sim.messages.find((m) => m.id === id)!.body).toBe('native secret 7272');

  const stored = await request(stack.t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  expect(stored.body.body).toBe('native secret 7272');
}, 30_000);
