import fs from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseHosts, parseResolvConf, queryNames } from '../../src/relay/relay-dns';
import type { SearchList } from '../../src/relay/relay-dns';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { startFakeDns } from './fake-dns';
import type { FakeDns } from './fake-dns';
import { createRelayTestApp, eventually, relayJobWhen, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * A callback host's name means what getaddrinfo made of it before relays resolved with c-ares
 * (src/relay/relay-dns.ts): the hosts file first, then DNS through resolv.conf's search list.
 * c-ares' resolve4/resolve6 apply neither, and the system resolver was asked only when DNS said
 * "no such name": in Kubernetes (ndots:5, search `<ns>.svc.cluster.local svc.cluster.local
 * cluster.local`) `http://receiver.dev/` — the cluster's `receiver` service of namespace `dev` —
 * was asked as the absolute `receiver.dev`, and where that name exists on the internet the
 * signed callback, numbers and status included, went to a stranger's host; a hostAliases pin
 * (/etc/hosts) of a name DNS also has was ignored the same way.
 *
 * DNS is a name server on a real UDP port (fake-dns.ts). 127.0.0.2 stands for the internet's
 * host of a name (an impostor listening on the customer app's port), 127.0.0.1 for the right
 * one (the customer app). The hosts file and the search list are the test's own.
 */
jest.setTimeout(60_000);

const CLUSTER: SearchList = {
  domains: ['dev.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
  ndots: 5,
};

let t: RelayTestApp;
let nameServer: FakeDns;
let impostor: Server | undefined;
let impostorHits: string[] = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-dns-search-'));
const hostsFile = path.join(dir, 'hosts');

beforeAll(async () => {
  fs.writeFileSync(
    hostsFile,
    [
      '# hostAliases',
      '127.0.0.1\tpinned.example.test   Pinned-Alias.example.test # pinned over DNS',
      'fd00::7  refused-pin.example.test',
      '',
    ].join('\n'),
  );
  nameServer = await startFakeDns((name) => {
    // The cluster's service, and a name of the same spelling on the internet.
    if (name === 'receiver.dev.svc.cluster.local') return { a: ['127.0.0.1'] };
    if (name === 'receiver.dev') return { a: ['127.0.0.2'] };
    if (name === 'pinned.example.test') return { a: ['127.0.0.2'] };
    // A name with enough dots: the internet's is the one meant.
    if (name === 'api.example.test') return { a: ['127.0.0.1'] };
    if (name === 'api.example.test.dev.svc.cluster.local') return { a: ['127.0.0.2'] };
    if (name.endsWith('.silent.cluster.local')) return 'silent';
    return undefined;
  });
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '1s,1s,1s', RELAY_TIMEOUT_MS: '2000' });
});

afterEach(async () => {
  await t.reset();
  await new Promise<void>((resolve) => (impostor ? impostor.close(() => resolve()) : resolve()));
  impostor = undefined;
  impostorHits = [];
  nameServer.questions.length = 0;
});

afterAll(async () => {
  await t.close();
  await nameServer.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const worker = (search: SearchList = CLUSTER) =>
  t.startWorker({
    dnsServers: [nameServer.server],
    hostsFile,
    dnsSearch: search,
    tuning: { pollMs: 20, statsEveryMs: 50 },
  });

/** A customer app on 127.0.0.1, and the internet's host of the same port on 127.0.0.2. */
async function appAndImpostor() {
  const app = await t.customerApp();
  impostor = createServer((req, res) => {
    impostorHits.push(req.url ?? '');
    res.end('ok');
  });
  await new Promise<void>((resolve) => impostor!.listen(app.port, '127.0.0.2', resolve));
  return app;
}

async function relayTo(url: string): Promise<string> {
  const id = await seedProxiedMessage(t.database.db, 'cxml', url);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  return id;
}

const asked = () => [...new Set(nameServer.questions.map((q) => q.name))];

describe('the names asked, as glibc walks the search list', () => {
  test('When a name has fewer dots than ndots, then each search domain is tried in order and the name as it is last', () => {
    expect(queryNames('receiver.dev', CLUSTER)).toEqual([
      'receiver.dev.dev.svc.cluster.local',
      'receiver.dev.svc.cluster.local',
      'receiver.dev.cluster.local',
      'receiver.dev',
    ]);
  });

  test('When a name has ndots dots or more, then it is tried as it is first, then with each search domain', () => {
    expect(queryNames('API.example.test', { domains: ['a.local', 'b.local'], ndots: 2 })).toEqual([
      'api.example.test',
      'api.example.test.a.local',
      'api.example.test.b.local',
    ]);
  });

  test('When a name ends in a dot, then it is tried as it is only', () => {
    expect(queryNames('receiver.dev.', CLUSTER)).toEqual(['receiver.dev']);
  });

  test('When resolv.conf is read, then the last search or domain line wins, ndots is taken (at most 15), comments are skipped, and without either the machine’s domain is the list', () => {
    const conf = [
      '; generated',
      'domain old.example',
      'nameserver 10.96.0.10',
      'search dev.svc.cluster.local svc.cluster.local. Cluster.Local',
      '# search ignored.example',
      'options ndots:5 timeout:1',
    ].join('\n');
    expect(parseResolvConf(conf)).toEqual(CLUSTER);
    expect(parseResolvConf('search a.example\ndomain b.example\noptions ndots:40')).toEqual({
      domains: ['b.example'],
      ndots: 15,
    });
    expect(parseResolvConf('nameserver 1.1.1.1', 'pod-7.corp.example')).toEqual({
      domains: ['corp.example'],
      ndots: 1,
    });
    expect(parseResolvConf('', 'pod-7')).toEqual({ domains: [], ndots: 1 });
  });

  test('When a hosts file is read, then IPv4 and IPv6 lines, aliases and case-insensitive names are taken and comments skipped', () => {
    const table = parseHosts(
      [
        '# comment 10.0.0.1 commented.test',
        '10.0.0.5 Svc.Example.test svc-alias   # trailing comment',
        'fd00::5\tsvc.example.test',
        'not-an-address broken.test',
        '10.0.0.6 svc.example.test.',
      ].join('\n'),
    );
    expect(Object.fromEntries(table)).toEqual({
      'svc.example.test': [
        { address: '10.0.0.5', family: 4 },
        { address: 'fd00::5', family: 6 },
        { address: '10.0.0.6', family: 4 },
      ],
      'svc-alias': [{ address: '10.0.0.5', family: 4 }],
    });
  });
});

test('When a cluster short name reached through the search list also exists as an absolute name on the internet, then the relay goes to the cluster service, not the internet host', async () => {
  const app = await appAndImpostor();
  const id = await relayTo(`http://receiver.dev:${app.port}/ok`);
  worker();
  await eventually(() => impostorHits.length > 0 || app.received.length > 0, 10_000);
  await relayJobWhen(t.database.db, id, (job) => job.state !== 'pending');
  expect({ internetHost: impostorHits, clusterService: app.received.length }).toEqual({
    internetHost: [],
    clusterService: 1,
  });
  // The first domain has no such name: the next is asked at once; the absolute name never.
  expect(asked()).toEqual(['receiver.dev.dev.svc.cluster.local', 'receiver.dev.svc.cluster.local']);
});

test('When a name has ndots dots or more, then the name as it is is asked first and a search domain’s name of the same spelling is not used', async () => {
  const app = await appAndImpostor();
  const id = await relayTo(`http://api.example.test:${app.port}/ok`);
  worker({ domains: CLUSTER.domains, ndots: 2 });
  await relayJobWhen(t.database.db, id, (job) => job.state === 'delivered');
  expect({ impostorHits, asked: asked() }).toEqual({
    impostorHits: [],
    asked: ['api.example.test'],
  });
});

test('When a name ends in a dot, then only that absolute name is asked', async () => {
  const app = await appAndImpostor();
  const id = await relayTo(`http://api.example.test.:${app.port}/ok`);
  worker();
  await relayJobWhen(t.database.db, id, (job) => job.state === 'delivered');
  expect({ impostorHits, asked: asked() }).toEqual({
    impostorHits: [],
    asked: ['api.example.test'],
  });
});

test('When a search domain’s name server does not answer, then the resolution ends there as a timeout within the budget, and no later name is asked', async () => {
  const app = await appAndImpostor();
  const id = await relayTo(`http://receiver.dev:${app.port}/ok`);
  worker({ domains: ['silent.cluster.local', ...CLUSTER.domains], ndots: 5 });
  const job = await relayJobWhen(t.database.db, id, (j) => j.attempts >= 1);
  expect(job).toMatchObject({ state: 'pending', last_error: expect.stringMatching(/ETIMEOUT/) });
  expect(asked()).toEqual(['receiver.dev.silent.cluster.local']);
  expect(app.received).toEqual([]);
});

test('When a name is pinned in the hosts file (Kubernetes hostAliases) and DNS has it too, then the pin is used and DNS is not asked', async () => {
  const app = await appAndImpostor();
  const ids = [
    await relayTo(`http://pinned.example.test:${app.port}/ok`),
    await relayTo(`http://pinned-alias.example.test.:${app.port}/ok`),
  ];
  worker();
  for (const id of ids) await relayJobWhen(t.database.db, id, (job) => job.state === 'delivered');
  expect({ impostorHits, asked: asked() }).toEqual({ impostorHits: [], asked: [] });
});

test('When the hosts file pins a name to an address that is not allowed, then the relay is dead with why and nothing is sent (hosts answers are guarded too)', async () => {
  const app = await appAndImpostor();
  const id = await relayTo(`http://refused-pin.example.test:${app.port}/ok`);
  worker();
  const job = await relayJobWhen(t.database.db, id, (j) => j.state === 'dead');
  expect(job.last_error).toMatch(/refused-pin\.example\.test: address fd00::7 is not allowed/);
  expect({ app: app.paths, impostorHits, asked: asked() }).toEqual({
    app: [],
    impostorHits: [],
    asked: [],
  });
});
