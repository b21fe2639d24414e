import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { usePublicListener } from '../helpers/public-listener';
import { eventually } from '../helpers/eventually';
import { storedEventCount } from '../helpers/raw-http';

/**
 * A keep-alive client (or a pipelining proxy) sends a good signed callback and, behind it on the
 * same connection, a request Node's parser refuses (two Content-Lengths, headers over 16 KiB)
 * or a CONNECT.
 * The parser error comes while the callback's answer is still owed (it waits on the commit).
 * A refusal written then was read as the answer to the first request: a stored callback's 200
 * taken for a 400 or 431 (src/http/listener.ts, answerClientError). Now the owed answer is
 * written, then the connection closed, nothing said of the bytes behind it.
 */

const listener = usePublicListener({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });

function signedNative(id: string): string {
  const body = JSON.stringify(nativeFields({ id }));
  const signature = signJsonBody(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
    body,
  );
  return (
    'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\n' +
    `Content-Type: application/json\r\nX-SignalWire-Signature: ${signature}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** What the connection carried back, and whether the service closed it (in 20 s). */
function send(raw: string): Promise<{ text: string; closedByService: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    let closedByService = false;
    const socket = net.connect(listener.port, '127.0.0.1', () => socket.write(raw));
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('end', () => (closedByService = true));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ text, closedByService }));
    setTimeout(() => socket.destroy(), 20_000).unref();
  });
}

const BAD_FOLLOWERS: Array<[string, string]> = [
  [
    'two Content-Lengths',
    'POST /callbacks/native HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}',
  ],
  [
    'headers over the limit',
    `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`,
  ],
  // Not a parser error: Node hands CONNECT over at once ('connect'), the answer still owed.
  ['CONNECT', 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'],
];

test.each(BAD_FOLLOWERS)(
  'When a stored callback is followed on its connection by a request the service refuses (%s), then the client reads the callback’s 200, and then the connection is closed',
  async (_name, follower) => {
    const id = randomUUID();
    const { text, closedByService } = await send(signedNative(id) + follower);
    await eventually(
      async () => (await storedEventCount(listener.t.database.db, id)) === 1,
      'stored',
    );
    // Its 200 (DESIGN §2), the only answer: nothing is said of the bytes behind it.
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(text.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(closedByService).toBe(true);
  },
);
