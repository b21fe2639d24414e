import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { sdkClient, startTappedProxy } from './support';
import type { TappedProxy } from './support';

/**
 * A redaction whose path ends in `/`. The proxy's own routing takes a trailing slash as the
 * same resource (proxy.routes.ts: "every spelling of a create path that SignalWire would take
 * as one"), and SignalWire's stand-in redacts the message for it: the text must go here too
 * (STORE_BODY=true), and a native PATCH's answer must show the caller's own callback URL, not
 * null.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTtrailingslash';
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

function stored(id: string) {
  return request(stack.t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
}

test('When a compatibility message is redacted at …/Messages/{sid}.json/ and SignalWire accepts it, then its text is gone here too', async () => {
  const client = sdkClient(stack.proxy.url, PROJECT, TOKEN);
  const sent = await client.messages.create({
    to: '+15557654321',
    from: '+15551234567',
    body: 'secret 4242',
  });
  expect((await stored(sent.sid)).body.body).toBe('secret 4242');

  const res = await request(stack.t.internalApp)
    .post(`/2010-04-01/Accounts/${PROJECT}/Messages/${sent.sid}.json/`)
    .set('Authorization', AUTH)
    .type('form')
    .send('Body=');
  // SignalWire (the simulator) redacted it.
  expect(res.status).toBe(200);
  expect(res.body.body).toBe('');
  expect(sim.messages.find((m) => m.id === sent.sid)!.body).toBe('');

  expect((await stored(sent.sid)).body.body).toBe('');
});

test('When a native message is redacted at /api/messaging/messages/{id}/, then the answer shows the caller’s own status_callback_url', async () => {
  const own = 'https://app.example.com/sms/status';
  const sent = await request(stack.t.internalApp)
    .post('/api/messaging/messages')
    .set('Authorization', AUTH)
    .send({ to: '+15557654321', from: '+15551234567', body: 'secret 4343', status_callback: own });
  expect(sent.status).toBe(201);
  expect(sent.body.status_callback_url).toBe(own);
  const id = sent.body.id as string;
  // Past `queued`, so that the simulator accepts the redaction.
  sim.messages.find((m) => m.id === id)!.status = 'sent';

  const res = await request(stack.t.internalApp)
    .patch(`/api/messaging/messages/${id}/`)
    .set('Authorization', AUTH)
    .send({ body: '' });
  expect(res.status).toBe(200);
  expect(res.body.status_callback_url).toBe(own);
  expect((await stored(id)).body.body).toBe('');
});
