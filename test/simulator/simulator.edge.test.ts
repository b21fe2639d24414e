import { RestClient } from '@signalwire/compatibility-api';
import pino from 'pino';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';

/**
 * The simulator serves only part of SignalWire's APIs (DESIGN §8). Everything else must still
 * be answered the way SignalWire answers a path it does not know — a 404 in the API's error
 * shape — so that a SignalWire client, pointed at the local stack, reports a 404 instead of
 * failing to parse an HTML page.
 */

const PROJECT = 'b2c3d4e5-f6a7-4901-bcde-f12345678901';
const TOKEN = 'PTsimulatoredgetoken';
const AUTH = basicAuthHeader(PROJECT, TOKEN);

let sim: RunningSimulator;

beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
});

afterAll(async () => {
  await sim.close();
});

test('When the official SDK calls a compatibility resource the simulator does not serve, then it rejects with a 404 RestException, not a parse error', async () => {
  const client = RestClient(PROJECT, TOKEN, { signalwireSpaceUrl: new URL(sim.url).host });
  (client.api as unknown as { baseUrl: string }).baseUrl = sim.url;

  // Applications are created and fetched, never listed.
  const error = (await client.applications.list({ limit: 5 }).then(
    () => null,
    (err: unknown) => err,
  )) as { status?: number; code?: number } | null;

  expect(error).toMatchObject({ status: 404, code: 20404 });
});

test.each([
  ['GET', `/api/laml/2010-04-01/Accounts/${PROJECT}/Applications.json`],
  [
    'DELETE',
    `/api/laml/2010-04-01/Accounts/${PROJECT}/Applications/0a059168-ead0-41af-9d1f-343dae832527.json`,
  ],
])(
  'When %s %s is not served, then the answer is 404 in the compatibility shape',
  async (method, path) => {
    const res = await fetch(`${sim.url}${path}`, { method, headers: { Authorization: AUTH } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      code: 20404,
      message: `The requested resource ${path} was not found`,
      more_info: expect.stringContaining('#20404') as unknown,
      status: 404,
    });
  },
);

test('When a native path is not served, then the answer is 404 in the native errors shape', async () => {
  // The native API has no GET for messages (RESEARCH.md §3.2): only its logs are read.
  const res = await fetch(`${sim.url}/api/messaging/messages`, {
    headers: { Authorization: AUTH },
  });
  expect(res.status).toBe(404);
  expect(await res.json()).toEqual({
    errors: [
      expect.objectContaining({ type: 'invalid_request_error', code: 'not_found' }) as unknown,
    ],
  });
});

test.each([
  [`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/%E0%A4%A.json`, 'compatibility'],
  ['/api/messaging/logs/%E0%A4%A', 'native'],
])(
  'When a lookup path %s has a malformed percent-escape, then the answer is a 400 in the %s shape naming the path, not the body',
  async (path, api) => {
    const res = await fetch(`${sim.url}${path}`, { headers: { Authorization: AUTH } });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { message?: string; errors?: Array<{ message: string }> };
    const message = api === 'native' ? body.errors?.[0]?.message : body.message;
    expect(message).toBe(`The request path ${path} is not valid percent-encoding`);
    if (api === 'compatibility') expect(body).toMatchObject({ code: 10000, status: 400 });
    else expect(body.errors?.[0]).toMatchObject({ type: 'invalid_request_error' });
  },
);

test('When the simulator logs a status callback it delivered or dropped, then the callback token in its URL is masked', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const token = 'v1.secret-callback-token-in-the-path';
  // Nothing listens on port 9: every delivery fails and is finally dropped (a warn line).
  const logged = await startSimulator({
    stepDelayMs: 1,
    retryBackoffMs: 1,
    callbackTimeoutMs: 200,
    logger,
  });
  try {
    const res = await fetch(`${logged.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`, {
      method: 'POST',
      headers: { Authorization: AUTH },
      body: new URLSearchParams({
        To: '+15557650000',
        From: '+15551234567',
        Body: 'hi',
        StatusCallback: `http://127.0.0.1:9/callbacks/cxml/${token}`,
      }),
    });
    expect(res.status).toBe(201);
    await logged.waitForIdle();
  } finally {
    await logged.close();
  }
  const callbackLines = lines.filter((line) => line.includes('status callback'));
  expect(callbackLines.length).toBeGreaterThan(0);
  expect(callbackLines.join('\n')).toContain('/callbacks/cxml/[token]');
  expect(lines.join('\n')).not.toContain(token);
});
