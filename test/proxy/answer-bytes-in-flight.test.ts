import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSignalWireClient } from '../../src/proxy/signalwire-client';
import type { SignalWireClient, UpstreamResult } from '../../src/proxy/signalwire-client';
import { eventually } from '../helpers/eventually';

/**
 * Each create answer is read whole (at most MAX_ANSWER_BYTES), and the answers being read
 * together are bounded too: a gateway answering many slow sends with large pages held hundreds
 * of MiB at once (450 sends near the per-answer limit: 459 MB, against a 512 MiB pod).
 */

const CHUNK = 40 * 1024;
const held: ServerResponse[] = [];
const upstream = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    // All of the answer but its last bytes, which wait for the test.
    res.writeHead(201, { 'content-type': 'text/plain', 'content-length': String(CHUNK + 10) });
    res.write(Buffer.alloc(CHUNK, 'a'));
    held.push(res);
  });
});

let client: SignalWireClient;
beforeAll(async () => {
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  client = createSignalWireClient({
    baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    timeoutMs: 15_000,
    // Room for one of the answers below, not for two.
    answerBytesInFlight: 64 * 1024,
  });
});
afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

const send = (): Promise<UpstreamResult<Buffer>> =>
  client.send({ method: 'POST', target: '/create', headers: {}, body: Buffer.from('x') });

const outcome = (result: UpstreamResult<Buffer>) =>
  result.ok ? `${result.response.status} ${result.response.body.length}` : result.failure;

test('When two answers together would hold more than the bytes allowed, then the second is cut (its outcome unknown) and the first is read whole; once it is, another fits again', async () => {
  const first = send();
  const second = send();
  await eventually(() => held.length === 2, 'both answers started');
  // Whichever answer's bytes came second is cut at once; the other waits for its last bytes.
  const cut = await Promise.race([first, second]);
  expect(outcome(cut)).toBe('interrupted');
  for (const res of held.splice(0)) if (!res.destroyed) res.end(Buffer.alloc(10, 'b'));
  const outcomes = (await Promise.all([first, second])).map(outcome).sort();
  expect(outcomes).toEqual([`201 ${CHUNK + 10}`, 'interrupted']);

  // The budget was given back: a new answer is read whole.
  const third = send();
  await eventually(() => held.length === 1, 'the third answer started');
  held.splice(0)[0]!.end(Buffer.alloc(10, 'c'));
  expect(outcome(await third)).toBe(`201 ${CHUNK + 10}`);
});

test('When one answer alone is larger than the bytes allowed together, then it is still read whole (up to the per-answer limit)', async () => {
  const small = createSignalWireClient({
    baseUrl: client.baseUrl,
    timeoutMs: 15_000,
    answerBytesInFlight: 16 * 1024,
  });
  const lone = small.send({
    method: 'POST',
    target: '/create',
    headers: {},
    body: Buffer.from('x'),
  });
  await eventually(() => held.length === 1, 'the answer started');
  held.splice(0)[0]!.end(Buffer.alloc(10, 'd'));
  expect(outcome(await lone)).toBe(`201 ${CHUNK + 10}`);
});
