import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { usePublicListener } from '../helpers/public-listener';
import { exchangeRaw, storedEventCount } from '../helpers/raw-http';

/**
 * RFC 9112 §3.2.2: a server MUST accept a request target in absolute form (`POST
 * https://host/path`). HAProxy forwards one in that form to an HTTP/1 server when it came so
 * (and, in some versions, for every HTTP/2 client); a callback that arrives so is SignalWire's
 * all the same. Its path and query are what PUBLIC_BASE_URL is followed by; the scheme and
 * authority it names are the sender's word, like Host, and are never signed against.
 */

const listener = usePublicListener({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });

function post(target: string, headers: Record<string, string>, body: string) {
  const lines = Object.entries({
    host: 'hooks.example.com',
    connection: 'close',
    'content-length': String(Buffer.byteLength(body)),
    ...headers,
  }).map(([name, value]) => `${name}: ${value}`);
  return exchangeRaw(
    listener.port,
    `POST ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n${body}`,
  );
}

test('When a signed form callback arrives with its request target in absolute form, then it is stored (200)', async () => {
  const fields = cxmlFields();
  const path = '/callbacks/cxml?tenant=acme';
  const answer = await post(
    `${TEST_PUBLIC_BASE_URL}${path}`,
    {
      'content-type': 'application/x-www-form-urlencoded',
      'x-signalwire-signature': signFormParams(
        TEST_SIGNING_KEY,
        TEST_PUBLIC_BASE_URL + path,
        Object.entries(fields),
      ),
    },
    new URLSearchParams(fields).toString(),
  );
  expect(answer.status).toBe(200);
  expect(await storedEventCount(listener.t.deps.db, fields.MessageSid!)).toBe(1);
});

test('When a signed JSON callback arrives in absolute form naming another authority, then it verifies against PUBLIC_BASE_URL only', async () => {
  const fields = nativeFields();
  const body = JSON.stringify(fields);
  const headers = (url: string) => ({
    'content-type': 'application/json',
    'x-signalwire-signature': signJsonBody(TEST_SIGNING_KEY, url, body),
  });
  // The authority in the target is the sender's: a signature for it proves nothing.
  const forged = await post(
    'http://evil.example:8080/callbacks/native',
    headers('http://evil.example:8080/callbacks/native'),
    body,
  );
  expect(forged.status).toBe(403);
  const genuine = await post(
    'http://evil.example:8080/callbacks/native',
    headers(`${TEST_PUBLIC_BASE_URL}/callbacks/native`),
    body,
  );
  expect(genuine.status).toBe(200);
  expect(await storedEventCount(listener.t.deps.db, String(fields.id))).toBe(1);
});
