import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withoutMessageBody } from '../../src/relay/relay-request';
import { postNative } from '../helpers/callbacks';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * With STORE_BODY off, a dead relay keeps its callback "without the message's text" (DESIGN
 * §4/§10, withoutMessageBody). The compatibility callback endpoint also accepts JSON (DESIGN
 * §2), whose text field is `Body`, not the native format's `body`: both must go.
 */

const SECRET_TEXT = 'my-one-time-code-482913';
let t: RelayTestApp;
let failing: Server;
let failingUrl: string;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms', RELAY_TIMEOUT_MS: '15000' });
  // An app that is down: every relay gets 503.
  failing = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(503).end());
  });
  await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve));
  failingUrl = `http://127.0.0.1:${(failing.address() as AddressInfo).port}/sms/status`;
  t.startWorker({ tuning: { statsEveryMs: 50, breaker: { failureThreshold: 1_000 } } });
});
afterAll(async () => {
  await t.close();
  failing.closeAllConnections();
  await new Promise((resolve) => failing.close(resolve));
});

test('When a JSON compatibility callback is relayed and the relay dies, then the stored payload no longer holds the message text (STORE_BODY off)', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', failingUrl);
  await postNative(
    t.publicApp,
    {
      MessageSid: id,
      MessageStatus: 'undelivered',
      ErrorCode: '30003',
      AccountSid: 'ea108133-d6b3-407c-9536-9fad8a929a6a',
      From: '+15551234567',
      To: '+15557654321',
      Body: SECRET_TEXT,
    },
    { path: '/callbacks/cxml' },
  ).expect(200);

  const [row] = await eventually(async () => {
    const rows = await t.database.db
      .selectFrom('relay_jobs')
      .selectAll()
      .where('message_id', '=', id)
      .execute();
    return rows[0]?.state === 'dead' && rows;
  });
  // The raw event is stored without it (normalize.ts strips `Body` for cXML)...
  const events = await t.database.db
    .selectFrom('status_events')
    .select('raw')
    .where('message_id', '=', id)
    .execute();
  expect(JSON.stringify(events)).not.toContain(SECRET_TEXT);
  // ...but the dead relay keeps it.
  expect(row!.payload?.toString() ?? '').not.toContain(SECRET_TEXT);
});

test('When a dead job holds a JSON callback (any `+json` type) with `Body` or `body`, then both are left out and every other field is kept as it came', () => {
  const payload = Buffer.from(
    '{"MessageSid":"a","Body":"secret","body":"secret too","__proto__":{"x":1},"To":"+1"}',
  );
  const kept = withoutMessageBody(
    payload,
    'POST',
    'application/vnd.signalwire+json; charset=utf-8',
  );
  expect(kept.toString()).not.toContain('secret');
  expect(kept.toString()).toBe('{"MessageSid":"a","__proto__":{"x":1},"To":"+1"}');
  // Nothing to leave out: the bytes stay exactly as SignalWire sent them.
  const plain = Buffer.from('{ "MessageSid": "a" }');
  expect(withoutMessageBody(plain, 'POST', 'application/json')).toBe(plain);
});
