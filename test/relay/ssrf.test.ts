import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { LookupFunction } from '../../src/relay/safe-agent';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { createRelayTransport } from '../../src/relay/relay-transport';
import { createRelayTestApp, relayJobWhen, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * A caller's callback URL is attacker-controlled input: a relay must never reach an internal
 * address (DESIGN §10 "No SSRF"). Here loopback is not allowed (RELAY_ALLOWED_NETWORKS=none),
 * a listener on loopback records every connection it gets, and every socket connect the
 * process makes is recorded too: none may go to a refused destination.
 */

let t: RelayTestApp;
let trap: net.Server;
let trapPort: number;
let trapConnections = 0;
const connects: Array<{ host: string; port: number }> = [];
let connectSpy: jest.SpyInstance;

// DNS as the test wants it: names that resolve to internal addresses.
const ZONE: Record<string, Array<{ address: string; family: number }>> = {
  'internal.example.test': [{ address: '127.0.0.1', family: 4 }],
  'metadata.example.test': [{ address: '169.254.169.254', family: 4 }],
  'mixed.example.test': [
    { address: '93.184.216.34', family: 4 },
    { address: '10.0.0.7', family: 4 },
  ],
};
const lookup = ((
  hostname: string,
  options: { all?: boolean },
  callback: (...args: unknown[]) => void,
) => {
  const addresses = ZONE[hostname];
  if (!addresses)
    return callback(Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
  if (options.all) return callback(null, addresses);
  return callback(null, addresses[0]!.address, addresses[0]!.family);
}) as unknown as LookupFunction;

beforeAll(async () => {
  trap = net.createServer((socket) => {
    trapConnections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => trap.listen(0, '0.0.0.0', resolve));
  trapPort = (trap.address() as AddressInfo).port;
  const original = net.Socket.prototype.connect;
  connectSpy = jest.spyOn(net.Socket.prototype, 'connect').mockImplementation(function (
    this: net.Socket,
    ...args: unknown[]
  ) {
    // net.connect passes its normalised arguments as one array.
    const options = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];
    if (typeof options === 'object' && options !== null && 'port' in options) {
      const { host, port } = options as { host?: string; port: number };
      connects.push({ host: host ?? '', port: Number(port) });
    }
    return (original as (...a: unknown[]) => net.Socket).apply(this, args);
  });
  t = await createRelayTestApp({ RELAY_ALLOWED_NETWORKS: 'none', RELAY_RETRY_SCHEDULE: '20ms' });
  t.startWorker({ lookup });
});

afterAll(async () => {
  await t.stopWorkers();
  connectSpy.mockRestore();
  await new Promise((resolve) => trap.close(resolve));
  await t.close();
});

// `{port}` is the trap's port.
const DESTINATIONS: Array<[string, string]> = [
  ['the cloud metadata address', 'http://169.254.169.254/latest/meta-data/'],
  ['loopback, not allowed here', 'http://127.0.0.1:{port}/hook'],
  ['IPv4-mapped loopback', 'http://[::ffff:127.0.0.1]:{port}/hook'],
  ['the unspecified address, which reaches this host', 'http://0.0.0.0:{port}/hook'],
  ['loopback written as one integer', 'http://2130706433:{port}/hook'],
  ['IPv6 loopback', 'http://[::1]:{port}/hook'],
  ['IPv4-compatible loopback (deprecated ::/96)', 'http://[::127.0.0.1]:{port}/hook'],
  ['the IPv4-compatible metadata address', 'http://[::a9fe:a9fe]/latest/meta-data/'],
  ['a name that resolves to loopback', 'http://internal.example.test:{port}/hook'],
  ['a name that resolves to the metadata address', 'http://metadata.example.test:{port}/'],
  ['a name with a public and a private address', 'http://mixed.example.test:{port}/'],
];

const deadJob = (id: string) => relayJobWhen(t.database.db, id, (job) => job.state === 'dead');

test.each(DESTINATIONS)(
  'When the callback URL is %s, then the relay is dead with the reason and nothing connects to it',
  async (what, template) => {
    const id = await seedProxiedMessage(
      t.database.db,
      'cxml',
      template.replace('{port}', String(trapPort)),
    );
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    const job = await deadJob(id);
    expect(job.attempts).toBe(1);
    expect(job.last_error).toMatch(/not allowed/);
    expect(job.last_error).toMatch(
      /127\.0\.0\.1|::ffff:7f00:1|::1|::7f00:1|::a9fe:a9fe|0\.0\.0\.0|169\.254\.169\.254|10\.0\.0\.7/,
    );
    expect(job.last_status).toBeNull();
    expect(trapConnections).toBe(0);
    // A socket given an IP dials it at once; one given a name dials only what its lookup
    // returns, and the guarded lookup refused (last_error names the address).
    const forbidden = connects.filter(
      (c) =>
        net.isIP(c.host) !== 0 &&
        (c.port === trapPort || c.host === '169.254.169.254' || c.host === '::a9fe:a9fe'),
    );
    expect({ what, forbidden }).toEqual({ what, forbidden: [] });
  },
);

test('When the callback URL is not http(s), then the relay is dead with why', async () => {
  const id = await seedProxiedMessage(t.database.db, 'native', 'file:///etc/passwd');
  await postNative(t.publicApp, nativeFields({ id, status: 'sent' })).expect(200);
  const job = await deadJob(id);
  expect(job.last_error).toMatch(/scheme file: is not allowed/);
});

test('Control: where loopback is allowed, the same addresses do reach the trap (so the checks above could fail)', async () => {
  const transport = createRelayTransport({
    timeoutMs: 15_000,
    maxSockets: 1,
    allowedNetworks: ['127.0.0.0/8', '0.0.0.0/32', '::ffff:127.0.0.1/128'],
    allowHttp: true,
    lookup,
  });
  try {
    for (const url of [
      'http://2130706433:{port}/',
      'http://0.0.0.0:{port}/',
      'http://internal.example.test:{port}/',
    ]) {
      const result = await transport.send({
        url: url.replace('{port}', String(trapPort)),
        method: 'GET',
        headers: {},
        body: null,
      });
      expect(result.kind).toBe('failed'); // the trap hangs up without answering
    }
  } finally {
    transport.close();
  }
  expect(trapConnections).toBe(3);
  expect(connects).toEqual(
    expect.arrayContaining([
      { host: '127.0.0.1', port: trapPort },
      { host: '0.0.0.0', port: trapPort },
    ]),
  );
});
