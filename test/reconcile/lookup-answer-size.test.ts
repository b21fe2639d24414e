import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_ANSWER_BYTES, createMessageLookup } from '../../src/reconcile/lookup-client';

/**
 * A lookup's answer is one message resource, a few KiB. The sweep read whatever came whole into
 * memory (a gateway in front of SignalWire answering with a huge or endless body could take the
 * process's heap with it); like the proxy's create answers, it is read to a bound, and an answer
 * past it is a failed lookup.
 */

const PROJECT = 'p-answer-size';
let server: Server;
let baseUrl = '';
// Bytes of padding in the next answer.
let padding = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const id = (req.url ?? '')
      .split('/')
      .at(-1)!
      .replace(/\.json$/, '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ sid: id, status: 'delivered', padding: 'a'.repeat(padding) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const lookup = () =>
  createMessageLookup({
    baseUrl,
    credentials: new Map([[PROJECT, { projectIdAsWritten: PROJECT, token: 'PT-token' }]]),
    timeoutMs: 20_000,
  }).lookup({ id: randomUUID(), api: 'cxml', projectId: PROJECT });

test('When a lookup answer is larger than any message resource, then the lookup fails instead of reading it whole', async () => {
  padding = 2 * MAX_ANSWER_BYTES;
  expect(await lookup()).toEqual({
    kind: 'failed',
    error: 'the answer is too large',
    unavailable: false,
  });
});

test('Control: an answer just within the bound is read and found', async () => {
  padding = MAX_ANSWER_BYTES - 1_000;
  expect(await lookup()).toMatchObject({ kind: 'found', answer: { status: 'delivered' } });
});
