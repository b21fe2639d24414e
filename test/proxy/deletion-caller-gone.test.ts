import { request as httpRequest } from 'node:http';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { eventually } from '../helpers/eventually';
import { startRedactionStack } from './support';
import type { RedactionStack } from './support';

/**
 * A deletion whose caller leaves once SignalWire has the request, SignalWire then not answering
 * in time: the outcome is unknown, and the text is forgotten all the same. Only a call that
 * never reached SignalWire (or a read) is dropped quietly when its caller goes
 * (pass-through.routes.ts leftByCaller).
 */
const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTdeletioncallergone';
let stack: RedactionStack;
beforeAll(async () => {
  stack = await startRedactionStack(
    { project: PROJECT, token: TOKEN },
    { SIGNALWIRE_TIMEOUT_MS: '1000' },
  );
});
afterAll(() => stack.close());

test('When the caller of a deletion leaves after it reached SignalWire and SignalWire does not answer in time, then the text is forgotten', async () => {
  const sid = await stack.send('my one-time code is 111222');
  expect(JSON.stringify((await stack.stored(sid)).body)).toContain('one-time code');
  stack.answer = () => new Promise(() => undefined);
  const proxyUrl = new URL(stack.proxy.url);
  const req = httpRequest({
    host: proxyUrl.hostname,
    port: proxyUrl.port,
    method: 'DELETE',
    path: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${sid}.json`,
    headers: { authorization: basicAuthHeader(PROJECT, TOKEN) },
  });
  req.on('error', () => undefined);
  req.end();
  await eventually(
    () => stack.tap.requests.some((r) => r.method === 'DELETE'),
    'DELETE reached SignalWire',
  );
  req.destroy();
  await eventually(
    async () => {
      const stored = await stack.stored(sid);
      return !JSON.stringify(stored.body).includes('one-time code');
    },
    'text forgotten',
    8_000,
  );
}, 20_000);
