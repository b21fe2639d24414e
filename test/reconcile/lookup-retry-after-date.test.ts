import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMessageLookup } from '../../src/reconcile/lookup-client';

/**
 * SignalWire's 429/503 may say when to come back as a date (`Retry-After: <HTTP-date>`). The
 * lookup reads it against the answer's own `Date`, as the relay does: a replica whose clock is
 * minutes off SignalWire's read "in five minutes" as "now" (and went on asking a rate-limited
 * SignalWire every few seconds) or as far longer.
 */
const server = createServer();
/** How far SignalWire's clock is off this replica's. */
let skewMs = 0;
server.on('request', (_req, res) => {
  const signalWireNow = Date.now() + skewMs;
  res.writeHead(429, {
    Date: new Date(signalWireNow).toUTCString(),
    'Retry-After': new Date(signalWireNow + 300_000).toUTCString(),
    'Content-Type': 'application/json',
  });
  res.end('{"code":"429"}');
});
let baseUrl: string;
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

test.each([
  ['on time', 0],
  ['10 minutes behind', -600_000],
  ['10 minutes ahead', 600_000],
])(
  'When SignalWire’s clock is %s and it asks for five minutes by date, then the lookup waits five minutes',
  async (_what, skew) => {
    skewMs = skew;
    const lookup = createMessageLookup({
      baseUrl,
      credentials: new Map([['p1', { projectIdAsWritten: 'p1', token: 'PT' }]]),
      timeoutMs: 5_000,
    });
    const result = await lookup.lookup({ id: 'SM1', api: 'cxml', projectId: 'p1' });
    expect(result).toMatchObject({ kind: 'failed', error: 'HTTP 429', unavailable: true });
    // The dates have whole seconds.
    const waitMs = (result as { retryAfterMs?: number }).retryAfterMs;
    expect(waitMs).toBeGreaterThanOrEqual(299_000);
    expect(waitMs).toBeLessThanOrEqual(301_000);
  },
);
