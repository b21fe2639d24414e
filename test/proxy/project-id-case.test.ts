import request from 'supertest';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Project ids are UUIDs, whose case carries nothing (RFC 9562 §4). A project listed in
 * SIGNALWIRE_PROJECT_IDS in capitals (pasted from a ticket) may send with its id as SignalWire
 * writes it, and the other way round; what is recorded is the lower-case id SignalWire writes
 * in its callbacks, which reconciliation looks messages up by. What goes upstream with the
 * caller's credentials (the Application's read) names the project as the caller wrote it: the
 * simulator, like Twilio's 20003 rule, holds the path's account to the credentials' exactly.
 */

const LOWER = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const UPPER = LOWER.toUpperCase();
const TOKEN = 'PTprojectcasetesttoken';

let sim: RunningSimulator;
let t: TestApp;

beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: sim.url, SIGNALWIRE_PROJECT_IDS: UPPER });
}, 60_000);

afterAll(async () => {
  await t.close();
  await sim.close();
});

async function recordedProject(messageId: string): Promise<unknown> {
  const res = await request(t.internalApp)
    .get(`/v1/messages/${messageId}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(200);
  return res.body.project_id;
}

test('When a project is listed in capitals and sends with its lower-case id, then the send goes through and the project is recorded in lower case', async () => {
  const res = await request(t.internalApp)
    .post('/api/messaging/messages')
    .auth(LOWER, TOKEN)
    .send({ to: '+15551230000', from: '+15551239999', body: 'hi' });
  expect(res.status).toBe(201);
  expect(await recordedProject(res.body.id)).toBe(LOWER);
});

test('When the caller writes its project in capitals, then the send goes through and SignalWire’s answer is recorded under the lower-case id', async () => {
  // The simulator answers with the account_sid as the credentials spell it.
  const res = await request(t.internalApp)
    .post(`/api/laml/2010-04-01/Accounts/${UPPER}/Messages.json`)
    .auth(UPPER, TOKEN)
    .type('form')
    .send({ To: '+15551230000', From: '+15551239999', Body: 'hi' });
  expect(res.status).toBe(201);
  expect(await recordedProject(res.body.sid)).toBe(LOWER);
});

test('When another project sends, then it is still refused 403 whatever its case', async () => {
  const other = '11111111-2222-4333-8444-555555555555'.toUpperCase();
  const res = await request(t.internalApp)
    .post('/api/messaging/messages')
    .auth(other, TOKEN)
    .send({ to: '+15551230000', from: '+15551239999', body: 'hi' });
  expect(res.status).toBe(403);
});

test('When a caller writing its project in capitals sends with an ApplicationSid and no StatusCallback, then the Application’s status callback is the one relayed to', async () => {
  const created = await request(sim.url)
    .post(`/api/laml/2010-04-01/Accounts/${UPPER}/Applications.json`)
    .auth(UPPER, TOKEN)
    .type('form')
    .send({ FriendlyName: 'app', MessageStatusCallback: 'https://app.example.com/status' });
  expect(created.status).toBe(201);

  const sent = await request(t.internalApp)
    .post(`/api/laml/2010-04-01/Accounts/${UPPER}/Messages.json`)
    .auth(UPPER, TOKEN)
    .type('form')
    .send({
      To: '+15551230000',
      From: '+15551239999',
      Body: 'hi',
      ApplicationSid: created.body.sid,
    });
  expect(sent.status).toBe(201);

  const message = await request(t.internalApp)
    .get(`/v1/messages/${sent.body.sid}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(message.status).toBe(200);
  expect(message.body.project_id).toBe(LOWER);
  expect(message.body.client_status_callback).toBe('https://app.example.com/status');
});
