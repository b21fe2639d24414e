import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
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
 * proxy's lookups of SignalWire, new database connections and the spool's files all waited
 * behind it. Then names DNS did not know went to getaddrinfo, at most two at once: a relay that
 * found both taken failed "system resolver is busy", an attempt of its schedule spent and a
 * failure counted against its host, for another tenant's hanging names. Now the hosts file and
 * the search list are read by relay-dns.ts itself, and getaddrinfo is never asked.
 *
 * DNS here is a name server on a real UDP port (fake-dns.ts), silent for `*.slow-dns.test`;
 * the hosts file and the search list are the test's own. The system resolver (getaddrinfo) is
 * stood in for in `dns.lookup`, so that a relay asking it shows: it knows `hosts-only.test`,
 * and holds a thread-pool thread for `*.slow-search.test` (an fs.open of a FIFO with no writer,
 * a blocking call in a libuv thread, as getaddrinfo waiting on a silent name server) until the
 * test releases it; `*.good.test` goes to the real getaddrinfo (of `localhost`).
 */
jest.setTimeout(60_000);

const RELAY_TIMEOUT_MS = 9_000;
/** Delivered "at once": well before a wait behind one timeout (RELAY_TIMEOUT_MS) could end. */
const PROMPT_MS = 6_000;

let t: RelayTestApp;
let nameServer: FakeDns;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-dns-'));
const hostsFile = path.join(dir, 'hosts');
const fifo = path.join(os.tmpdir(), `relay-dns-fifo-${process.pid}`);
const realLookup = dns.lookup;
let lookupSpy: jest.SpyInstance;
/** Names the system resolver was asked, and its lookups held right now. */
let systemAsked: string[] = [];
let held = 0;

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
  await eventually(() => held === 0, 20_000);
  fs.closeSync(fd);
}

beforeAll(async () => {
  execFileSync('mkfifo', [fifo]);
  fs.writeFileSync(hostsFile, '127.0.0.1 hosts-only.test\n');
  lookupSpy = jest.spyOn(dns, 'lookup').mockImplementation(systemResolver as never);
  nameServer = await startFakeDns((name) => {
    if (name.endsWith('.slow-dns.test')) return 'silent';
    if (name === 'app.search.test') return { a: ['127.0.0.1'] };
    if (name === 'split.good.test') return { a: ['127.0.0.1'], aaaa: ['fd00::7'] };
    if (name.endsWith('.good.test')) return { a: ['127.0.0.1'] };
    return undefined;
  });
  // A relay that waited behind a silent name server would wait RELAY_TIMEOUT_MS (the DNS
  // budget and the attempt's): 9 s, so that "at once" (PROMPT_MS) has room on a loaded machine
  // and still tells the two apart.
  t = await createRelayTestApp({
    RELAY_RETRY_SCHEDULE: Array(8).fill('1s').join(','),
    RELAY_TIMEOUT_MS: String(RELAY_TIMEOUT_MS),
  });
});

afterEach(async () => {
  await t.reset();
  await t.database.db.deleteFrom('relay_jobs').execute();
  await releaseHeldLookups();
  systemAsked = [];
  nameServer.questions.length = 0;
});

afterAll(async () => {
  await t.close();
  await nameServer.close();
  lookupSpy.mockRestore();
  fs.unlinkSync(fifo);
  fs.rmSync(dir, { recursive: true, force: true });
});

const worker = () =>
  t.startWorker({
    dnsServers: [nameServer.server],
    hostsFile,
    dnsSearch: { domains: ['search.test'], ndots: 1 },
    tuning: { pollMs: 20, statsEveryMs: 50 },
  });

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
  expect(Date.now() - started).toBeLessThan(PROMPT_MS);
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

test('When the callback host’s name is in the hosts file, then the relay is delivered from it without asking DNS or the system resolver', async () => {
  const app = await t.customerApp();
  const id = await relayTo(`http://hosts-only.test:${app.port}/ok`);
  worker();
  await eventually(() => app.received.some((r) => r.messageId === id && r.answered === 200));
  expect({ dns: nameServer.questions, system: systemAsked }).toEqual({ dns: [], system: [] });
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
    RELAY_TIMEOUT_MS + 3_000,
  ).then(
    () => Date.now() - started,
    () => null,
  );
  // Delivered at once, as without the slow tenants. With getaddrinfo it was not delivered at
  // all: its lookup waited for a thread behind the slow ones and the attempt timed out.
  expect(delivered).toEqual(expect.any(Number));
  expect(delivered).toBeLessThan(PROMPT_MS);
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

test('When another tenant’s names are not in DNS (once left to the system resolver, where they hung), then names of the hosts file and the search list are delivered at their first attempt — no relay waits for, or is refused, the system resolver — and the rest of the process goes on', async () => {
  const slowApp = await t.customerApp();
  const fast = await t.customerApp();
  const tenant: string[] = [];
  for (let i = 0; i < 8; i++) {
    tenant.push(await relayTo(`http://s${i}.slow-search.test:${slowApp.port}/status`));
  }
  worker();
  for (const id of tenant) {
    const job = await relayJobWhen(t.database.db, id, (j) => j.attempts >= 1);
    expect(job).toMatchObject({ state: 'pending', last_error: expect.stringMatching(/ENOTFOUND/) });
  }
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    ids.push(await relayTo(`http://hosts-only.test:${fast.port}/ok`));
    ids.push(await relayTo(`http://app:${fast.port}/ok`)); // app.search.test
  }
  const deliveredIn = await timed(() =>
    Promise.all(ids.map((id) => relayJobWhen(t.database.db, id, (j) => j.state === 'delivered'))),
  );
  const jobs = await Promise.all(ids.map(jobOf));
  expect({ deliveredIn, attempts: jobs.map((job) => job.attempts) }).toEqual({
    deliveredIn: expect.any(Number),
    attempts: ids.map(() => 1),
  });
  expect({ systemAsked, held }).toEqual({ systemAsked: [], held: 0 });
  const lookupMs = await timed(() => dns.promises.lookup('localhost'));
  const readMs = await timed(() => fs.promises.readFile(__filename));
  expect({ lookupMs, readMs }).toEqual({
    lookupMs: expect.any(Number),
    readMs: expect.any(Number),
  });
});
