import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RestClient } from '@signalwire/compatibility-api';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import type { Db } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import type { Api } from '../../src/messages/statuses';
import { createRelay } from '../../src/relay/relay';
import type { RelayJobRow } from '../../src/relay/relay.repository';
import type { RelayWorker } from '../../src/relay/relay-worker';
import type { LookupFunction } from '../../src/relay/safe-agent';
import { signJsonBody } from '../../src/signalwire/signing';
import { TEST_PROJECTS, statusEvent } from '../factories';
import { createTestApp, TEST_SIGNING_KEY, TEST_TOKEN_SECRET } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A customer's app on a real port: the endpoint a caller gave as its own status callback.
 * It validates every relay the way an app does (the official SDK's validateRequest for form
 * bodies, the hex scheme for JSON) and answers as each message's behaviour says.
 */
export interface ReceivedRelay {
  messageId: string;
  status: string;
  path: string;
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The signature verified for the URL the app was given, with the expected key. */
  valid: boolean;
  answered: number;
}

export interface Answer {
  status: number;
  delayMs?: number;
  headers?: Record<string, string>;
}

export interface CustomerApp {
  url: string;
  port: number;
  /** Callback URL of this app for a path (the caller's `StatusCallback`). */
  callbackUrl(path?: string): string;
  received: ReceivedRelay[];
  /** Every request, whatever its path (to prove a redirect target was never asked). */
  paths: string[];
  /** Answers for one message's relays: n is 1 for its first request. */
  behave(messageId: string, answer: (n: number) => Answer): void;
  /** The most requests one of these messages ever had in flight at once. */
  maxConcurrent(ids: readonly string[]): number;
  /** The most requests this app ever had in flight at once. */
  maxConcurrentOverall(): number;
  close(): Promise<void>;
}

export async function startCustomerApp(signingKey: string): Promise<CustomerApp> {
  const behaviours = new Map<string, (n: number) => Answer>();
  const counts = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const maxConcurrent = new Map<string, number>();
  let open = 0;
  let maxOpen = 0;
  const received: ReceivedRelay[] = [];
  const paths: string[] = [];
  // Answers not given yet (a slow app): close() cancels them, so no timer outlives the app.
  const pendingAnswers = new Set<NodeJS.Timeout>();
  let base = '';

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      paths.push(req.url ?? '');
      const url = `${base}${req.url ?? ''}`;
      const signature = String(req.headers['x-signalwire-signature'] ?? '');
      let messageId = '';
      let status = '';
      let valid: boolean;
      if ((req.headers['content-type'] ?? '').startsWith('application/json')) {
        const json = JSON.parse(body) as { id: string; status: string };
        messageId = json.id;
        status = json.status;
        valid = signature === signJsonBody(signingKey, url, body);
      } else if (req.method === 'GET') {
        // A GET's parameters are in the URL, which the signature covers whole.
        const params = Object.fromEntries(new URL(url).searchParams);
        messageId = params['MessageSid'] ?? '';
        status = params['MessageStatus'] ?? '';
        valid = RestClient.validateRequest(signingKey, signature, url, {});
      } else {
        const params = Object.fromEntries(new URLSearchParams(body));
        messageId = params['MessageSid'] ?? '';
        status = params['MessageStatus'] ?? '';
        valid = RestClient.validateRequest(signingKey, signature, url, params);
      }
      // Open until answered, or until the client gives up (a relay timing out).
      open++;
      maxOpen = Math.max(maxOpen, open);
      let closed = false;
      const close = (): void => {
        if (!closed) open--;
        closed = true;
      };
      res.on('close', close);
      const n = (counts.get(messageId) ?? 0) + 1;
      counts.set(messageId, n);
      const concurrent = (inFlight.get(messageId) ?? 0) + 1;
      inFlight.set(messageId, concurrent);
      maxConcurrent.set(messageId, Math.max(maxConcurrent.get(messageId) ?? 0, concurrent));
      const answer = behaviours.get(messageId)?.(n) ?? { status: 200 };
      const entry: ReceivedRelay = {
        messageId,
        status,
        path: req.url ?? '',
        method: req.method ?? '',
        headers: req.headers,
        body,
        valid,
        answered: answer.status,
      };
      const timer = setTimeout(() => {
        pendingAnswers.delete(timer);
        inFlight.set(messageId, (inFlight.get(messageId) ?? 1) - 1);
        close();
        received.push(entry);
        if (!res.destroyed) res.writeHead(answer.status, answer.headers).end();
      }, answer.delayMs ?? 0);
      pendingAnswers.add(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  base = `http://127.0.0.1:${port}`;
  return {
    url: base,
    port,
    callbackUrl: (path = '/sms/status') => `${base}${path}`,
    received,
    paths,
    behave: (id, answer) => behaviours.set(id, answer),
    maxConcurrentOverall: () => maxOpen,
    maxConcurrent: (ids) => Math.max(0, ...ids.map((id) => maxConcurrent.get(id) ?? 0)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of pendingAnswers) clearTimeout(timer);
        pendingAnswers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A message sent through the proxy with the caller's own callback: its first, proxy event. */
export async function seedProxiedMessage(
  db: Db,
  api: Api,
  clientStatusCallback: string,
  id: string = randomUUID(),
  projectId: string = TEST_PROJECTS[api],
  ref: string | null = null,
): Promise<string> {
  const event = statusEvent('queued', {
    messageId: id,
    api,
    projectId,
    source: 'proxy',
    send: { ref, kind: 'sms', clientStatusCallback, body: null },
  });
  await recordEvents(db, [event]);
  return id;
}

/**
 * seedProxiedMessage, its send bound to a freshly minted callback token (as the proxy's): the
 * token admits the message's callbacks at `/callbacks/<api>/<token>` without a signature.
 */
export async function seedTokenBoundMessage(
  db: Db,
  api: Api,
  clientStatusCallback: string,
  projectId: string = TEST_PROJECTS[api],
): Promise<{ id: string; token: string }> {
  const { token, ref } = mintCallbackToken([TEST_TOKEN_SECRET]);
  const id = await seedProxiedMessage(db, api, clientStatusCallback, randomUUID(), projectId, ref);
  return { id, token };
}

/** Polls until `check` returns a value (not undefined/false), or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** What a test may change of the relay worker createRelay builds from the app's configuration. */
export type RelayWorkerSetup = Partial<
  Pick<
    Parameters<typeof createRelay>[0],
    'db' | 'lookup' | 'dnsServers' | 'hostsFile' | 'dnsSearch' | 'registry' | 'tuning'
  >
>;

/**
 * A relay worker on `on`'s database (or `setup.db`), started. It looks at the outbox every
 * 20 ms unless `setup.tuning` says otherwise, so that tests do not wait on the poll. The caller
 * stops it.
 */
export function startRelayWorker(on: TestApp, setup: RelayWorkerSetup = {}): RelayWorker {
  const worker = createRelay({
    config: on.config,
    db: setup.db ?? on.database.db,
    logger: on.deps.logger,
    ...(setup.lookup && { lookup: setup.lookup }),
    ...(setup.dnsServers && { dnsServers: setup.dnsServers }),
    ...(setup.hostsFile && { hostsFile: setup.hostsFile }),
    ...(setup.dnsSearch && { dnsSearch: setup.dnsSearch }),
    ...(setup.registry && { registry: setup.registry }),
    tuning: { pollMs: 20, ...setup.tuning },
  });
  worker.start();
  return worker;
}

/**
 * The service as createTestApp builds it, with the customer apps and relay workers a relay
 * test starts: they are stopped and closed with it, workers first (they wait for their
 * requests in flight), then the apps, then the service and its database.
 */
export interface RelayTestApp extends TestApp {
  /** A customer app on a real port that validates relays signed with `signingKey`. */
  customerApp(signingKey?: string): Promise<CustomerApp>;
  /** A relay worker as startRelayWorker starts it on this app, as each replica runs one. */
  startWorker(setup?: RelayWorkerSetup): RelayWorker;
  /** Stops every worker started so far (the replicas of one test). */
  stopWorkers(): Promise<void>;
  /** Stops the workers and closes the customer apps started so far: between tests. */
  reset(): Promise<void>;
}

/** A RelayTestApp; `env` overrides the test defaults, as for createTestApp. */
export async function createRelayTestApp(env: Record<string, string> = {}): Promise<RelayTestApp> {
  const t = await createTestApp(env);
  const workers: RelayWorker[] = [];
  const apps: CustomerApp[] = [];
  const stopWorkers = async (): Promise<void> => {
    for (const worker of workers.splice(0)) await worker.stop();
  };
  const reset = async (): Promise<void> => {
    await stopWorkers();
    for (const app of apps.splice(0)) await app.close();
  };
  return {
    ...t,
    async customerApp(signingKey = TEST_SIGNING_KEY) {
      const app = await startCustomerApp(signingKey);
      apps.push(app);
      return app;
    },
    startWorker(setup) {
      const worker = startRelayWorker(t, setup);
      workers.push(worker);
      return worker;
    },
    stopWorkers,
    reset,
    async close() {
      await reset();
      await t.close();
    },
  };
}

/** Polls until the message's relay job is as `until` wants, and returns it. */
export async function relayJobWhen(
  db: Db,
  messageId: string,
  until: (job: RelayJobRow) => boolean,
): Promise<RelayJobRow> {
  return eventually(async () => {
    const job = await db
      .selectFrom('relay_jobs')
      .selectAll()
      .where('message_id', '=', messageId)
      .executeTakeFirst();
    return job !== undefined && until(job) && job;
  });
}

/** A name lookup that answers `address` for every name. */
export function lookupTo(address: string): LookupFunction {
  return ((
    _hostname: string,
    options: { all?: boolean },
    callback: (...args: unknown[]) => void,
  ) =>
    options.all
      ? callback(null, [{ address, family: 4 }])
      : callback(null, address, 4)) as unknown as LookupFunction;
}
