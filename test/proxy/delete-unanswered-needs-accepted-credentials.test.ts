import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { createInternalApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { compatMessageResource, listen, sdkClient } from './support';
import type { Listening } from './support';

/**
 * The proxy never checks a password: SignalWire does. A deletion that gets no answer (the
 * proxy answers 504, SignalWire may have done it) erases the stored text only for credentials
 * SignalWire has already accepted in this process (src/proxy/accepted-credentials.ts). So a
 * caller on the internal network who knows a project's id but not its token cannot erase that
 * project's texts by deleting while SignalWire is slow; the app itself, whose sends SignalWire
 * accepted, still can.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTgenuineapptoken';
const WRONG = 'PTguessedpassword';

let created: Record<string, unknown> | undefined;
let upstream: Listening;
let t: TestApp;
let proxy: Listening;
const lines: string[] = [];

beforeAll(async () => {
  // SignalWire: a create answers 201; a deletion is never answered in time (SignalWire slow).
  upstream = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST') {
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(created));
      }
    });
  });
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: upstream.url,
    STORE_BODY: 'true',
    SIGNALWIRE_TIMEOUT_MS: '1000',
  });
  const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
  proxy = await listen(createInternalApp({ ...t.deps, logger }));
});
afterAll(async () => {
  await proxy.close();
  await t.close();
  await upstream.close();
});

/** A message the app sent through the proxy (SignalWire accepted its credentials), text stored. */
async function sent(): Promise<string> {
  const sid = randomUUID();
  created = compatMessageResource(PROJECT, sid, 'my one-time code is 314159');
  await sdkClient(proxy.url, PROJECT, TOKEN).messages.create({
    to: '+15557654321',
    from: '+15551234567',
    body: 'my one-time code is 314159',
  });
  expect(await storedText(sid)).toBe(true);
  return sid;
}

async function storedText(sid: string): Promise<boolean> {
  const stored = await request(t.internalApp)
    .get(`/v1/messages/${sid}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  return JSON.stringify(stored.body).includes('one-time code');
}

async function remove(sid: string, token: string): Promise<unknown> {
  return sdkClient(proxy.url, PROJECT, token)
    .messages(sid)
    .remove()
    .then(
      () => 'ok',
      (e: { status?: number }) => e.status,
    );
}

test('When a caller with the project’s id and a wrong password deletes a message and SignalWire does not answer in time, then its text is kept and the log says why', async () => {
  const sid = await sent();
  lines.length = 0;

  expect(await remove(sid, WRONG)).toBe(504);

  expect(await storedText(sid)).toBe(true);
  const kept = lines
    .map((line) => JSON.parse(line) as { level: number; msg: string; message_id?: string })
    .filter((line) => line.message_id === sid);
  expect(kept).toEqual([
    expect.objectContaining({
      level: 40,
      msg: expect.stringContaining('not yet seen accepting these credentials') as unknown,
    }),
  ]);
  const basic = Buffer.from(`${PROJECT}:${WRONG}`).toString('base64');
  for (const line of lines) {
    expect(line).not.toContain(WRONG);
    expect(line).not.toContain(basic);
  }
}, 30_000);

test('When the app whose send SignalWire accepted deletes the message and SignalWire does not answer in time, then its text is forgotten', async () => {
  const sid = await sent();

  expect(await remove(sid, TOKEN)).toBe(504);

  expect(await storedText(sid)).toBe(false);
}, 30_000);
