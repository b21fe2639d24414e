import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createSimulator } from '../../src/simulator/simulator';
import type { Simulator } from '../../src/simulator/simulator';

/**
 * The simulator answers the lookups reconciliation makes (DESIGN §8, §11) with each message's
 * true state — including the lost-callback scenario, where no callback says `delivered`.
 */

const PROJECT = 'c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f';
const AUTH = basicAuthHeader(PROJECT, 'PTlookups');
let sim: Simulator;

beforeEach(() => {
  sim = createSimulator({
    stepDelayMs: 1,
    credentials: { projectId: PROJECT, token: 'PTlookups' },
  });
});
afterEach(() => sim.dispose());

async function sendNative(to: string, statusCallback?: string): Promise<string> {
  const res = await request(sim.app)
    .post('/api/messaging/messages')
    .set('Authorization', AUTH)
    .send({
      to,
      from: '+15551234567',
      body: 'hi',
      ...(statusCallback && { status_callback: statusCallback }),
    })
    .expect(201);
  return (res.body as { id: string }).id;
}

test('When a lost-callback message is looked up in the message logs, then it says delivered although no callback did', async () => {
  // Nothing listens on port 9: every callback fails, which the scenario does not depend on.
  const id = await sendNative('+15558650008', 'http://127.0.0.1:9/hook');
  await sim.waitForIdle();
  expect(sim.deliveries.filter((d) => d.messageId === id).map((d) => d.status)).toEqual([
    'queued',
    'initiated',
    'sent',
  ]);
  const log = await request(sim.app)
    .get(`/api/messaging/logs/${id}`)
    .set('Authorization', AUTH)
    .expect(200);
  expect(log.body).toMatchObject({
    id,
    status: 'delivered',
    source: 'realtime_api',
    error_code: null,
  });
});

test('When an undelivered message is looked up, then the log carries its error code', async () => {
  const id = await sendNative('+15558650003');
  await sim.waitForIdle();
  const log = await request(sim.app)
    .get(`/api/messaging/logs/${id}`)
    .set('Authorization', AUTH)
    .expect(200);
  expect(log.body).toMatchObject({
    status: 'undelivered',
    error_code: 'unreachable_destination_handset',
  });
});

test('When the log is asked for without valid credentials or for an unknown id, then 401 and 404', async () => {
  const id = await sendNative('+15558650001');
  await request(sim.app)
    .get(`/api/messaging/logs/${id}`)
    .set('Authorization', basicAuthHeader(PROJECT, 'wrong'))
    .expect(401);
  await request(sim.app)
    .get('/api/messaging/logs/00000000-0000-4000-8000-000000000000')
    .set('Authorization', AUTH)
    .expect(404);
});

test('When a lost-callback compatibility message is fetched, then its resource says delivered', async () => {
  const res = await request(sim.app)
    .post(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`)
    .set('Authorization', AUTH)
    .type('form')
    .send({ To: '+15557650008', From: '+15551234567', Body: 'hi' })
    .expect(201);
  const sid = (res.body as { sid: string }).sid;
  await sim.waitForIdle();
  const fetched = await request(sim.app)
    .get(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${sid}.json`)
    .set('Authorization', AUTH)
    .expect(200);
  expect(fetched.body).toMatchObject({ sid, status: 'delivered' });
});
