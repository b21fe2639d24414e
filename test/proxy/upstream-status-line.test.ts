import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listenTcp } from './support';
import type { Listening } from './support';

/**
 * SignalWire's answer is passed back with its status (DESIGN §5) — when it is one. A status
 * line no caller can be given (`099`: Express refuses a status below 100) became a 500 of the
 * proxy's own, and a `101 Switching Protocols` (which Node's client ends with neither an answer
 * nor an error) kept the caller waiting for SIGNALWIRE_TIMEOUT_MS and then said SignalWire did
 * not answer. Both are answers after the request went out: 502, the outcome unknown, at once.
 */

const PROJECT = 'a1b2c3d4-e5f6-4890-abcd-ef1234567890';
const AUTH = basicAuthHeader(PROJECT, 'PTstatuslinetoken');
const COMPAT = `/api/laml/2010-04-01/Accounts/${PROJECT}`;

let upstream: Listening;
let t: TestApp;
// What the upstream writes for every request it gets.
let answer = '';

beforeAll(async () => {
  upstream = await listenTcp((socket) => socket.on('data', () => socket.write(answer)));
  // Far longer than any answer here takes: a 504 would mean the exchange ran into it.
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url, SIGNALWIRE_TIMEOUT_MS: '20000' });
});

afterAll(async () => {
  await t.close();
  await upstream.close();
});

const STATUS_LINES: Array<[string, string]> = [
  [
    'a status below 100',
    'HTTP/1.1 099 Odd\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
  ],
  [
    '101 Switching Protocols',
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
  ],
];

describe.each(STATUS_LINES)('When SignalWire answers with %s', (_what, raw) => {
  beforeEach(() => {
    answer = raw;
  });

  test('then a native create gets 502 upstream_outcome_unknown in the native shape', async () => {
    const res = await request(t.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ to: '+15557650000', from: '+15551234567', body: 'x' }));
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ errors: [{ code: 'upstream_outcome_unknown' }] });
  });

  test('then a call passed through gets 502 code 20503 in the compatibility shape', async () => {
    const res = await request(t.internalApp)
      .get(`${COMPAT}/Messages/${randomUUID()}.json`)
      .set('Authorization', AUTH);
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ code: 20503, status: 502 });
  });
});
