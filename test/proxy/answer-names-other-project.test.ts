import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { compatMessageResource, curlDataUrlencode } from './support';

/**
 * SignalWire answers a send with the project it was authenticated as. An answer naming another
 * (misrouted or stale, from a gateway or cache in between) used to decide the message's project:
 * the message was tied to a project this service does not even serve, every genuine callback —
 * naming the send's project — was refused 403 as another project's, and the app never heard of
 * its message again. The project recorded is the one the send was authenticated as.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const OTHER_PROJECT = 'd4e5f6a7-b8c9-4012-9ef0-345678901bcd';
const AUTH = basicAuthHeader(PROJECT, 'PTupstreamSecretZZ');
const APP_CALLBACK = 'https://app.example.com/sms-status';
const SID = 'bbbbbbbb-0000-4000-8000-000000000001';

const forwarded: string[] = [];
const upstream = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk));
  req.on('end', () => {
    forwarded.push(body);
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify(compatMessageResource(OTHER_PROJECT, SID, 'hello')));
  });
});

let t: TestApp;
beforeAll(async () => {
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const port = (upstream.address() as AddressInfo).port;
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${port}`,
    SIGNALWIRE_PROJECT_IDS: PROJECT,
  });
});
afterAll(async () => {
  await t?.close();
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

test('When the answer to a send names another project, then the message is the sending project’s, and its genuine callback is stored and relayed to the app', async () => {
  const sent = await request(t.internalApp)
    .post(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`)
    .set('Authorization', AUTH)
    .type('form')
    .send(
      curlDataUrlencode([
        ['To', '+15557650100'],
        ['From', '+15551234567'],
        ['Body', 'hello'],
        ['StatusCallback', APP_CALLBACK],
      ]),
    );
  expect(sent.status).toBe(201);
  const token = new URLSearchParams(forwarded.at(-1)).get('StatusCallback')!.split('/').pop()!;

  // SignalWire's callback for the send, to the URL the proxy gave it, names the send's project.
  const callback = await request(t.publicApp)
    .post(`/callbacks/cxml/${token}`)
    .type('form')
    .send(
      new URLSearchParams({
        MessageSid: SID,
        MessageStatus: 'delivered',
        AccountSid: PROJECT,
        From: '+15551234567',
        To: '+15557650100',
      }).toString(),
    );
  const stored = await request(t.internalApp)
    .get(`/v1/messages/${SID}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  const { rows } = await t.database.pool.query<{ url: string }>(
    'SELECT url FROM relay_jobs WHERE message_id = $1',
    [SID],
  );

  expect({
    callback: callback.status,
    project: stored.body.project_id,
    status: stored.body.status,
    relays: rows.map((row) => row.url),
  }).toEqual({ callback: 200, project: PROJECT, status: 'delivered', relays: [APP_CALLBACK] });
});
