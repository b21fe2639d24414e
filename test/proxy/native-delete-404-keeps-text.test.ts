import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { startTappedProxy } from './support';
import type { TappedProxy } from './support';

/**
 * The native API has no deletion (RESEARCH §3.2: only create and update under
 * `/api/messaging/messages`), so SignalWire answers a native DELETE 404 by its routing, about a
 * message that still exists there. The proxy read that 404 as "already deleted" and erased the
 * stored text (STORE_BODY=true) of a message SignalWire still holds. Found by review.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTnativedelete';
const AUTH = basicAuthHeader(PROJECT, TOKEN);

let sim: RunningSimulator;
let stack: TappedProxy;

beforeAll(async () => {
  sim = await startSimulator({
    stepDelayMs: 3_600_000,
    credentials: { projectId: PROJECT, token: TOKEN },
  });
  stack = await startTappedProxy({ forwardTo: sim.url }, { STORE_BODY: 'true' });
});
afterAll(async () => {
  await stack.close();
  await sim.close();
});

test('When an app deletes a native message and SignalWire answers 404 (the native API has no deletion), then its text is kept here', async () => {
  const sent = await request(stack.t.internalApp)
    .post('/api/messaging/messages')
    .set('Authorization', AUTH)
    .send({ to: '+15557654321', from: '+15551234567', body: 'native secret 5151' });
  expect(sent.status).toBe(201);
  const id = sent.body.id as string;

  const deleted = await request(stack.t.internalApp)
    .delete(`/api/messaging/messages/${id}`)
    .set('Authorization', AUTH);
  expect(deleted.status).toBe(404);
  // SignalWire still holds it, with its text.
  expect(sim.messages.find((m) => m.id === id)!.body).toBe('native secret 5151');

  const stored = await request(stack.t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  expect(stored.body.body).toBe('native secret 5151');
});
