import { randomUUID } from 'node:crypto';
import net from 'node:net';
import {
  CALLBACK_BODY_BYTES_IN_FLIGHT,
  SMALL_CALLBACK_BYTES,
} from '../../src/callbacks/callbacks.routes';
import { MAX_BODY_PIECES } from '../../src/http/listener';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { usePublicListener } from '../helpers/public-listener';
import { exchangeRaw, expectErrorShape, storedEventCount } from '../helpers/raw-http';

/**
 * The public listener as an attacker meets it: through the service's own listener
 * (createListener, as main.ts serves it) on a real socket, with what no HTTP client library
 * sends — requests Node answers itself before the app, and bodies that stall.
 */

const listener = usePublicListener({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });

/** Writes `raw` on a new connection and reads until the service closes it. */
const exchange = (raw: string) => exchangeRaw(listener.port, raw);

/**
 * A signed native callback's request, with `extraHeaders` lines; `padding` characters more in
 * a field of its own make it a large body.
 */
function signedNative(id: string, extraHeaders = '', padding = 0): string {
  const fields = nativeFields({ id });
  const body = JSON.stringify(padding > 0 ? { ...fields, padding: 'x'.repeat(padding) } : fields);
  const signature = signJsonBody(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
    body,
  );
  return (
    'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n' +
    `Content-Type: application/json\r\nX-SignalWire-Signature: ${signature}\r\n${extraHeaders}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

const eventsOf = (messageId: string) => storedEventCount(listener.t.database.db, messageId);

describe('what Node answers before the app', () => {
  test('When an HTTP/1.1 request has no Host header, then 400 in the service’s error shape (not Node’s empty body)', async () => {
    const answer = await exchange(
      'POST /callbacks/native HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
    );
    expectErrorShape(answer, 400, 'missing_host');
  });

  test('When an HTTP/1.0 request has no Host header, then the app answers it (Host is optional there)', async () => {
    const answer = await exchange(
      'POST /callbacks/native HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
    );
    expectErrorShape(answer, 401, 'unauthorized');
  });

  test('When a callback carries an Expect other than 100-continue, then 417 in the service’s error shape and nothing is stored', async () => {
    const id = randomUUID();
    const answer = await exchange(signedNative(id, 'Expect: something-else\r\n'));
    expectErrorShape(answer, 417, 'expectation_failed');
    expect(await eventsOf(id)).toBe(0);
  });

  test('When a callback carries Expect: 100-continue, then it is told to continue and stored', async () => {
    const id = randomUUID();
    const answer = await exchange(signedNative(id, 'Expect: 100-continue\r\n'));
    expect(answer.raw).toMatch(/^HTTP\/1\.1 100 Continue\r\n/);
    expect(answer.status).toBe(200);
    expect(await eventsOf(id)).toBe(1);
  });
});

describe('bodies that stall', () => {
  test('When large bodies holding the whole in-flight budget stall, then a further large callback is refused 503 before its body is read, an ordinary one is still stored, and a large one is accepted once they are gone', async () => {
    // Each declares the maximum body, shows a (false) signature, and sends no body. Node sends
    // 100 Continue in the same tick as it hands the request to the app, which reserves the
    // body's size synchronously: once it arrives, the reservation is held.
    const stalled: net.Socket[] = [];
    const count = CALLBACK_BODY_BYTES_IN_FLIGHT / (64 * 1024);
    const large = SMALL_CALLBACK_BYTES + 1;
    try {
      await Promise.all(
        Array.from(
          { length: count },
          () =>
            new Promise<void>((resolve, reject) => {
              const socket = net.connect(listener.port, '127.0.0.1', () =>
                socket.write(
                  'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\n' +
                    'Content-Type: application/json\r\nX-SignalWire-Signature: forged\r\n' +
                    'Expect: 100-continue\r\nContent-Length: 65536\r\n\r\n',
                ),
              );
              stalled.push(socket);
              socket.once('data', (data: Buffer) =>
                data.toString('latin1').startsWith('HTTP/1.1 100 Continue')
                  ? resolve()
                  : reject(new Error(`not continued: ${data.toString('latin1')}`)),
              );
              socket.on('error', reject);
            }),
        ),
      );

      const refusedId = randomUUID();
      const refused = await exchange(signedNative(refusedId, '', large));
      expectErrorShape(refused, 503, 'unavailable');
      expect(refused.headers['retry-after']).toBeDefined();
      expect(refused.headers['connection']).toBe('close');
      expect(await eventsOf(refusedId)).toBe(0);

      // The attack delays only other large bodies: SignalWire's ordinary callbacks go on.
      const ordinaryId = randomUUID();
      expect((await exchange(signedNative(ordinaryId))).status).toBe(200);
      expect(await eventsOf(ordinaryId)).toBe(1);
    } finally {
      for (const socket of stalled) socket.destroy();
    }

    // Their reservations end with their connections: a large callback is accepted again.
    let acceptedId = '';
    await eventually(async () => {
      acceptedId = randomUUID();
      return (await exchange(signedNative(acceptedId, '', large))).status === 200;
    }, 'a large callback accepted once the stalled bodies are gone');
    expect(await eventsOf(acceptedId)).toBe(1);
  });
});

describe('a refused callback whose body keeps coming', () => {
  test('When an unsigned callback is refused 401 and its chunked body then comes in thousands of 1-byte chunks, then the connection is cut and nothing behind the body is answered', async () => {
    // The 401 is answered before the body is read (credentials are checked first, DESIGN §2);
    // what Node then discards still counts against the listener's limit of body pieces.
    const socket = net.connect(listener.port, '127.0.0.1');
    let text = '';
    socket.on('data', (data: Buffer) => (text += data.toString('latin1')));
    socket.on('error', () => undefined);
    let closed = false;
    socket.on('close', () => (closed = true));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\n' +
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    await eventually(() => /^HTTP\/1\.1 401/.test(text), 'the refusal');
    socket.write(
      '1\r\n \r\n'.repeat(2 * MAX_BODY_PIECES) +
        '0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: hooks.example.com\r\n\r\n',
    );
    const answers = () => text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
    await eventually(() => closed || answers().length > 1, 'the connection cut, or an answer');
    expect(answers()).toEqual(['HTTP/1.1 401']);
    expect(closed).toBe(true);
  });
});
