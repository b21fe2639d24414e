import { randomUUID } from 'node:crypto';
import net from 'node:net';
import {
  CALLBACK_BODY_BYTES_IN_FLIGHT,
  SMALL_CALLBACK_BYTES,
} from '../../src/callbacks/callbacks.routes';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { usePublicListener } from '../helpers/public-listener';
import { exchangeRaw, expectErrorShape, storedEventCount } from '../helpers/raw-http';

/**
 * callbacks.routes.ts promises that an attacker filling CALLBACK_BODY_BYTES_IN_FLIGHT "delays
 * only other oversized bodies, never an ordinary callback". A body without Content-Length
 * (chunked) declares no size: reserved at the full 64 KiB limit before a byte was read, 256
 * stalled chunked requests with a forged signature header (anyone can send one) got every
 * ordinary ~200-byte chunked callback refused 503 for as long as they were held. A chunked
 * body reserves only what it has read, once past SMALL_CALLBACK_BYTES.
 */

const listener = usePublicListener({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });

/** A signed native callback, chunked; `padding` characters more make it a large body. */
function signedChunkedNative(id: string, padding = 0): string {
  const fields = nativeFields({ id });
  const body = JSON.stringify(padding > 0 ? { ...fields, padding: 'x'.repeat(padding) } : fields);
  const signature = signJsonBody(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
    body,
  );
  return (
    'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n' +
    `Content-Type: application/json\r\nX-SignalWire-Signature: ${signature}\r\n` +
    'Transfer-Encoding: chunked\r\n\r\n' +
    `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`
  );
}

/** `count` connections, each sending a chunked body's head and `bytes` bytes of it, stalled. */
async function stallChunked(count: number, bytes: number): Promise<net.Socket[]> {
  const stalled: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = net.connect(listener.port, '127.0.0.1', () =>
      socket.write(
        'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\n' +
          'Content-Type: application/json\r\nX-SignalWire-Signature: forged\r\n' +
          `Transfer-Encoding: chunked\r\n\r\n${bytes.toString(16)}\r\n{${'x'.repeat(bytes - 1)}\r\n`,
      ),
    );
    socket.on('error', () => undefined);
    stalled.push(socket);
  }
  await eventually(
    () => stalled.every((socket) => socket.bytesWritten > 0),
    'every stalled request sent',
  );
  // Time for the service to read what they sent.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return stalled;
}

test('When chunked requests with a forged signature stall their bodies, then an ordinary small chunked callback is still stored', async () => {
  // Sanity: an ordinary chunked callback is accepted when nothing stalls.
  const before = randomUUID();
  expect((await exchangeRaw(listener.port, signedChunkedNative(before))).status).toBe(200);

  const stalled = await stallChunked(CALLBACK_BODY_BYTES_IN_FLIGHT / (64 * 1024), 1);
  try {
    const ordinary = randomUUID();
    const answer = await exchangeRaw(listener.port, signedChunkedNative(ordinary));
    expect(answer.status).toBe(200);
    expect(await storedEventCount(listener.t.database.db, ordinary)).toBe(1);
  } finally {
    for (const socket of stalled) socket.destroy();
  }
});

test('When stalled chunked bodies past SMALL_CALLBACK_BYTES hold the whole budget, then a further large chunked callback is refused 503 and an ordinary one is still stored; once they are gone a large one is stored', async () => {
  // Each has sent the most a body may be: together they hold the whole budget.
  const each = 64 * 1024;
  const stalled = await stallChunked(CALLBACK_BODY_BYTES_IN_FLIGHT / each, each);
  const large = SMALL_CALLBACK_BYTES + 1;
  try {
    // Once the service has read what they sent (until then, large ones still fit).
    const refusedId = randomUUID();
    let refused = await exchangeRaw(listener.port, signedChunkedNative(refusedId, large));
    await eventually(async () => {
      if (refused.status === 503) return true;
      refused = await exchangeRaw(listener.port, signedChunkedNative(randomUUID(), large));
      return refused.status === 503;
    }, 'a large chunked callback refused');
    expectErrorShape(refused, 503, 'unavailable');
    expect(refused.headers['retry-after']).toBeDefined();
    expect(refused.headers['connection']).toBe('close');
    expect(await storedEventCount(listener.t.database.db, refusedId)).toBe(0);

    const ordinary = randomUUID();
    expect((await exchangeRaw(listener.port, signedChunkedNative(ordinary))).status).toBe(200);
    expect(await storedEventCount(listener.t.database.db, ordinary)).toBe(1);
  } finally {
    for (const socket of stalled) socket.destroy();
  }

  // Their reservations are released when their connections go.
  const acceptedId = randomUUID();
  await eventually(async () => {
    const answer = await exchangeRaw(listener.port, signedChunkedNative(acceptedId, large));
    return answer.status === 200;
  }, 'a large chunked callback accepted');
  expect(await storedEventCount(listener.t.database.db, acceptedId)).toBe(1);
});
