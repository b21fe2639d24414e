import request from 'supertest';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * SIGNALWIRE_CREDENTIALS is kept by the project's lower-case id (messages store it so), but a
 * lookup names the project upstream as the operator wrote it, in the path and the Basic
 * username: SignalWire's rules on its case are not known, and an upstream that reads the
 * username as written (the simulator, Twilio-style) would refuse every lookup of a project
 * written in capitals (`unauthorized`: the sweep pauses the project), though the proxy's sends
 * with the very same credentials go through.
 */
const LOWER = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const UPPER = LOWER.toUpperCase();
const TOKEN = 'PTprojectcasetesttoken';

let sim: RunningSimulator;
let t: TestApp;

beforeAll(async () => {
  sim = await startSimulator({
    stepDelayMs: 3_600_000,
    credentials: { projectId: UPPER, token: TOKEN },
  });
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: sim.url,
    SIGNALWIRE_CREDENTIALS: `${UPPER}:${TOKEN}`,
  });
}, 60_000);

afterAll(async () => {
  await t.close();
  await sim.close();
});

test('When the operator writes the project of SIGNALWIRE_CREDENTIALS as the upstream issued it, then a message sent with those credentials can be looked up', async () => {
  const sent = await request(t.internalApp)
    .post(`/api/laml/2010-04-01/Accounts/${UPPER}/Messages.json`)
    .auth(UPPER, TOKEN)
    .type('form')
    .send({ To: '+15551230000', From: '+15551239999', Body: 'hi' });
  expect(sent.status).toBe(201);

  const message = await request(t.internalApp)
    .get(`/v1/messages/${sent.body.sid}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(message.status).toBe(200);

  // As the sweep builds its lookup (reconcile.ts: config.signalwireCredentials, the message's
  // recorded project).
  const lookup = createMessageLookup({
    baseUrl: sim.url,
    credentials: t.config.signalwireCredentials,
    timeoutMs: 15_000,
  });
  const result = await lookup.lookup({
    id: sent.body.sid,
    api: 'cxml',
    projectId: message.body.project_id,
  });
  expect(result.kind).toBe('found');
});
