import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { SYSTEM_LOOKUPS } from '../../src/relay/relay-dns';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { startFakeDns } from './fake-dns';
import type { FakeDns } from './fake-dns';
import { createRelayTestApp, eventually, relayJobWhen, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * A relay resolves its callback host's name as src/relay/relay-dns.ts says, and a host whose
 * name server never answers must not delay other hosts (DESIGN §10). It did: dns.lookup
 * (getaddrinfo) runs on libuv's thread pool (4 threads) and cannot be cancelled, so a tenant
 * with wildcard names in a silent zone — one name per message, which per-host limits and
 * circuit breakers do not see as one host — held every thread, and other apps' relays, the
 * proxy's lookups of SignalWire, new database connections by name and the spool's files all
 * waited behind it.
 *
 * DNS here is a name server on a real UDP port (fake-dns.ts), silent for `*.slow-dns.test`.
 * The system resolver (getaddrinfo) is stood in for in `dns.lookup`, where relay-dns.ts asks it:
 * for names of the silent zone, and for `*.slow-search.test` (a search-list domain whose name
 * server is silent), it holds a thread-pool thread as getaddrinfo waiting on a silent name
 * server does (an fs.open of a FIFO with no writer: a blocking call in a libuv thread) until the
 * test releases it; `hosts-only.test` is in its /etc/hosts; `*.good.test` goes to the real
 * getaddrinfo (of `localhost`), as every name once did.
 */
jest.setTimeout(60_000);

let t: RelayTestApp;
let nameServer: FakeDns;
const fifo = path.join(os.tmpdir(), `relay-dns-fifo-${process.pid}`);
const realLookup = dns.lookup;
let lookupSpy: jest.SpyInstance;
/** Names the system resolver was asked, and its lookups held right now and at most. */
let systemAsked: string[] = [];
let held = 0;
let mostHeld = 0;

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address?: string | dns.LookupAddress[],
  family?: number,
) => void;

function systemResolver(hostname: string, options: dns.LookupOptions, callback: LookupCallback) {
  // The test's own HTTP clients look their 127.0.0.1 up too: not the relay's.
  if (net.isIP(hostname) !== 0) {
    return realLookup(hostname, options as dns.LookupAllOptions, callback);
  }
  systemAsked.push(hostname);
  if (hostname.endsWith('.slow-dns.test') || hostname.endsWith('.slow-search.test')) {
    held++;
    mostHeld = Math.max(mostHeld, held);
    fs.open(fifo, 'r', (error, fd) => {
      if (!error) fs.close(fd, () => undefined);
      held--;
      callback(Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
    });
    return;
  }
  if (hostname === 'hosts-only.test') {
    if (options.all)
      return process.nextTick(() => callback(null, [{ address: '127.0.0.1', family: 4 }]));
    return process.nextTick(() => callback(null, '127.0.0.1', 4));
  }
  if (hostname.endsWith('.good.test')) {
    return realLookup('localhost', { ...options, family: 4 } as dns.LookupAllOptions, callback);
  }
  return realLookup(hostname, options as dns.LookupAllOptions, callback);
}

/** Lets every held system lookup return: a writer for the FIFO, for a moment. */
async function releaseHeldLookups(): Promise<void> {
  const fd = fs.openSync(fifo, fs.constants.O_RDWR);
  await eventually(() => held === 0, 5_000);
  fs.closeSync(fd);
}

beforeAll(async () => {
  execFileSync('mkfifo', [fifo]);
  lookupSpy = jest.spyOn(dns, 'lookup').mockImplementation(systemResolver as never);
  nameServer = await startFakeDns((name) => {
    if (name.endsWith('.slow-dns.test')) return 'silent';
    if (name === 'split.good.test') return { a: ['127.0.0.1'], aaaa: ['fd00::7'] };
    if (name.endsWith('.good.test')) return { a: ['127.0.0.1'] };
    return undefined;
  });
  t = await createRelayTestApp({
    RELAY_RETRY_SCHEDULE: Array(8).fill('1s').join(','),
    RELAY_TIMEOUT_MS: '3000',
  });
});

afterEach(async () => {
  await t.reset();
  await t.database.db.deleteFrom('relay_jobs').execute();
  await releaseHeldLookups();
  systemAsked = [];
  mostHeld = 0;
  nameServer.questions.length = 0;
});

afterAll(async () => {
  await t.close();
  await nameServer.close();
  lookupSpy.mockRestore();
  fs.unlinkSync(fifo);
});

const worker = () =>
  t.startWorker({ dnsServers: [nameServer.server], tuning: { pollMs: 20, statsEveryMs: 50 } });

async function relayTo(url: string): Promise<string> {
  const id = await seedProxiedMessage(t.database.db, 'cxml', url);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  return id;
}

const jobOf = (id: string) =>
  t.database.db
    .selectFrom('relay_jobs')
    .select(['state', 'attempts', 'last_error'])
    .where('message_id', '=', id)
    .executeTakeFirstOrThrow();

/** How long `op` took, or what it still did after `limitMs`. */
async function timed(op: () => Promise<unknown>, limitMs = 4_000): Promise<number | string> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      op().then(() => Date.now() - started),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`still waiting after ${limitMs} ms`), limitMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test('When the callback host’s name is in DNS, then the relay is delivered at once and the system resolver is not asked', async () => {
  const app = await t.customerApp();
  const id = await relayTo(`http://app.good.test:${app.port}/ok`);
  const started = Date.now();
  worker();
  await eventually(() => app.received.some((r) => r.messageId === id && r.answered === 200));
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(nameServer.questions).toEqual(
    expect.arrayContaining([
      { name: 'app.good.test', type: 'A' },
      { name: 'app.good.test', type: 'AAAA' },
    ]),
  );
  expect(systemAsked).toEqual([]);
});

test('When the callback host is localhost or a name under .localhost, then it is loopback without asking anyone (RFC 6761)', async () => {
  const app = await t.customerApp();
  const ids = [
    await relayTo(`http://localhost:${app.port}/ok`),
    await relayTo(`http://app.localhost.:${app.port}/ok`),
  ];
  worker();
  await eventually(() =>
    ids.every((id) => app.received.some((r) => r.messageId === id && r.answered === 200)),
  );
  expect({ dns: nameServer.questions, system: systemAsked }).toEqual({ dns: [], system: [] });
});

test('When DNS has no such name but the system resolver has (/etc/hosts, the search list), then the relay is delivered through it', async () => {
  const app = await t.customerApp();
  const id = await relayTo(`http://hosts-only.test:${app.port}/ok`);
  worker();
  await eventually(() => app.received.some((r) => r.messageId === id && r.answered === 200));
  expect(systemAsked).toEqual(['hosts-only.test']);
});

test('When a name’s IPv4 address is allowed and its IPv6 one is not, then the relay is dead with why and nothing is sent (A and AAAA are checked together)', async () => {
  const app = await t.customerApp();
  const id = await relayTo(`http://split.good.test:${app.port}/ok`);
  worker();
  const job = await relayJobWhen(t.database.db, id, (j) => j.state === 'dead');
  expect(job.last_error).toMatch(/split\.good\.test: address fd00::7 is not allowed/);
  expect(app.paths).toEqual([]);
});

test('When tenants’ callback domains have a silent name server, then another app’s relay is still delivered promptly, and theirs fail as timeouts without asking the system resolver', async () => {
  const slowApp = await t.customerApp();
  const fast = await t.customerApp();
  // Eight messages, each to its own host name of a tenant's domain (wildcard DNS).
  const slow: string[] = [];
  for (let i = 0; i < 8; i++)
    slow.push(await relayTo(`http://t${i}.slow-dns.test:${slowApp.port}/status`));
  const id = await relayTo(`http://app.good.test:${fast.port}/ok`);

  const started = Date.now();
  worker();
  const delivered = await eventually(
    () => fast.received.some((r) => r.messageId === id && r.answered === 200),
    12_000,
  ).then(
    () => Date.now() - started,
    () => null,
  );
  // Delivered at once, as without the slow tenants. With getaddrinfo it was not delivered at
  // all: its lookup waited for a thread behind the slow ones and the attempt timed out.
  expect(delivered).toEqual(expect.any(Number));
  expect(delivered).toBeLessThan(3_000);
  await relayJobWhen(t.database.db, id, (job) => job.state === 'delivered');
  // The slow tenants' attempts end within RELAY_TIMEOUT_MS as DNS timeouts, to be retried.
  for (const slowId of slow) {
    const job = await relayJobWhen(t.database.db, slowId, (j) => j.attempts >= 1);
    expect(job).toMatchObject({ state: 'pending', last_error: expect.stringMatching(/ETIMEOUT/) });
  }
  expect(systemAsked).toEqual([]);
});

test('When tenants’ callback domains have a silent name server, then the rest of the process (a lookup as the SignalWire client makes, a file read as the spool makes) does not wait behind the relay', async () => {
  const slowApp = await t.customerApp();
  for (let i = 0; i < 8; i++) await relayTo(`http://u${i}.slow-dns.test:${slowApp.port}/status`);
  worker();
  // The worker has started resolving every slow name (from DNS, or from the system resolver).
  await eventually(
    () => new Set([...nameServer.questions.map((q) => q.name), ...systemAsked]).size >= 8,
  );
  const lookupMs = await timed(() => dns.promises.lookup('localhost'));
  const readMs = await timed(() => fs.promises.readFile(__filename));
  expect({ lookupMs, readMs }).toEqual({
    lookupMs: expect.any(Number),
    readMs: expect.any(Number),
  });
});

test('When names only the system resolver knows hang there, then it is never asked more than twice at once (abandoned lookups counting), other relays needing it fail at once to be retried, and the rest of the process goes on', async () => {
  const slowApp = await t.customerApp();
  const fast = await t.customerApp();
  const hanging: string[] = [];
  for (let i = 0; i < 8; i++) {
    hanging.push(await relayTo(`http://s${i}.slow-search.test:${slowApp.port}/status`));
  }
  worker();
  await eventually(() => held >= SYSTEM_LOOKUPS);
  // Past RELAY_TIMEOUT_MS (3 s): the attempts holding lookups are given up, their lookups
  // still held, and every relay has been retried at least once since (RELAY_RETRY_SCHEDULE 1s).
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  expect({ mostHeld, asked: systemAsked.length }).toEqual({
    mostHeld: SYSTEM_LOOKUPS,
    asked: SYSTEM_LOOKUPS,
  });
  const jobs = await Promise.all(hanging.map(jobOf));
  expect(jobs.every((job) => job.state === 'pending' && job.attempts >= 2)).toBe(true);
  expect(
    jobs.filter((job) => /EAI_AGAIN.*system resolver is busy/.test(job.last_error ?? '')).length,
  ).toBeGreaterThanOrEqual(hanging.length - SYSTEM_LOOKUPS);

  // Another name the system resolver would answer fails at once, to be retried, not queued.
  const hostsOnly = await relayTo(`http://hosts-only.test:${fast.port}/ok`);
  const failedIn = await timed(() =>
    relayJobWhen(t.database.db, hostsOnly, (j) => j.attempts >= 1),
  );
  expect(failedIn).toEqual(expect.any(Number));
  expect((await jobOf(hostsOnly)).last_error).toMatch(/^EAI_AGAIN: hosts-only\.test: .*busy/);

  // Names in DNS, and the rest of the process, do not wait.
  const id = await relayTo(`http://app.good.test:${fast.port}/ok`);
  const deliveredIn = await timed(() =>
    eventually(() => fast.received.some((r) => r.messageId === id && r.answered === 200)),
  );
  const lookupMs = await timed(() => dns.promises.lookup('localhost'));
  const readMs = await timed(() => fs.promises.readFile(__filename));
  expect({ deliveredIn, lookupMs, readMs }).toEqual({
    deliveredIn: expect.any(Number),
    lookupMs: expect.any(Number),
    readMs: expect.any(Number),
  });
  expect(deliveredIn).toBeLessThan(3_000);
});
