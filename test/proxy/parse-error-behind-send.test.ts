import net from 'node:net';
import type { ServerResponse } from 'node:http';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { usePublicListener } from '../helpers/public-listener';
import { eventually } from '../helpers/eventually';
import { listen } from '../proxy/support';
import type { Listening } from '../proxy/support';

/**
 * The send proxy on the internal listener (createListener, as main.ts serves it). A caller's
 * keep-alive connection carries a create that SignalWire accepts; while the proxy waits for
 * SignalWire's answer, the next bytes on that connection are a request Node's parser refuses, or a CONNECT.
 * A `400 malformed_request` was written on the socket then and the connection cut: the caller
 * read "not sent" for a message SignalWire did send. Now it reads the create's 201.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTpipelinetoken');
let upstream: Listening;
const creates: string[] = [];
let held: ServerResponse | undefined;

beforeAll(async () => {
  upstream = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      creates.push(req.url ?? '');
      held = res; // answered once the test has sent the follower
    });
  });
});
afterAll(() => upstream.close());

const listener = usePublicListener(() => ({ SIGNALWIRE_SPACE_URL: upstream.url }), 'internalApp');

const FOLLOWERS: Array<[string, string]> = [
  [
    'two Content-Lengths',
    'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
  ],
  // Handed over by Node at once ('connect'), with the bytes behind it.
  [
    'CONNECT',
    'CONNECT evil.example:443 HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n',
  ],
];

/** A create held at SignalWire, `follower` behind it, then SignalWire's 201: what the caller read. */
async function createThen(follower: string): Promise<string> {
  const before = creates.length;
  const body = 'To=%2B15551230000&From=%2B15559876543&Body=hello';
  const create =
    `POST /api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json HTTP/1.1\r\nHost: x\r\n` +
    `Authorization: ${AUTH}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
    `Content-Length: ${body.length}\r\n\r\n${body}`;
  let text = '';
  const socket = net.connect(listener.port, '127.0.0.1', () => socket.write(create));
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));

  // SignalWire has the create (the message goes out)...
  await eventually(() => creates.length === before + 1, 'the create at SignalWire');
  // ...and the caller's next request is one the service refuses.
  socket.write(follower);
  await new Promise((resolve) => setTimeout(resolve, 200));
  held?.writeHead(201, { 'content-type': 'application/json' });
  held?.end(JSON.stringify({ sid: '0a059168-ead0-41af-9d1f-343dae832527', status: 'queued' }));
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
  socket.destroy();
  return text;
}

test.each(FOLLOWERS)(
  'When a create SignalWire accepted is followed on its connection by a request the service refuses (%s), then the caller reads the create’s answer, never a refusal in its place',
  async (_name, follower) => {
    const text = await createThen(follower);
    // The create's answer, the only one: never a refusal telling the caller its sent message
    // was a malformed request.
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 201 Created');
    expect(text.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
  },
);

// The follower handed to the app, its body then refused by the parser: its own refusal (or
// the app's answer to it) may follow, after the create's.
const BODY_FOLLOWERS: Array<[string, string]> = [
  [
    'a bad chunk size',
    'POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
  ],
  [
    'a chunk without its CRLF',
    'POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY',
  ],
];

test.each(BODY_FOLLOWERS)(
  'When a create SignalWire accepted is followed on its connection by a request whose body the parser refuses (%s), then the caller reads the create’s answer first',
  async (_name, follower) => {
    const text = await createThen(follower);
    const statuses = text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
    expect(statuses[0]).toBe('HTTP/1.1 201');
    // Anything after it is the follower's own answer: a 4xx, once.
    expect(statuses.slice(1)).toEqual(
      statuses.length > 1 ? [expect.stringMatching(/ 4\d\d$/)] : [],
    );
  },
);
