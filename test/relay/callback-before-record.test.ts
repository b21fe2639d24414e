import type { IncomingMessage } from 'node:http';
import { sql } from 'kysely';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { listen } from '../proxy/support';
import { eventually, startCustomerApp, startRelayWorker } from './support';
import type { CustomerApp } from './support';

/**
 * SignalWire may call back before its answer to the create call reaches the proxy (a slow
 * answer, a busy proxy): the callbacks, authenticated by the send's token, then create the
 * message before the proxy has recorded it with the caller's own callback URL. They must still
 * be relayed to that URL — every one, in order, once — whichever order the two take, on both
 * APIs. Over real sockets: the SDK (or fetch) → proxy → a slow upstream in front of the
 * simulator, whose callbacks reach the receiver while the answer is held back.
 */

/** Between the proxy and the simulator: holds the answer to the next create until released. */
interface SlowUpstream {
  url: string;
  /** The next create's answer is held; `answered` resolves once the simulator has given it. */
  holdNext(): { answered: Promise<void>; release(): void };
  target: string;
  /** The next create is answered 401 without reaching the simulator: SignalWire refused it. */
  refuseNext: boolean;
  close(): Promise<void>;
}

async function startSlowUpstream(): Promise<SlowUpstream> {
  let hold: { answered: () => void; released: Promise<void> } | null = null;
  const body = (req: IncomingMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  const upstream: SlowUpstream = {
    url: '',
    target: '',
    refuseNext: false,
    holdNext() {
      let answered!: () => void;
      let release!: () => void;
      const answeredPromise = new Promise<void>((resolve) => (answered = resolve));
      hold = { answered, released: new Promise<void>((resolve) => (release = resolve)) };
      return { answered: answeredPromise, release };
    },
    close: async () => undefined,
  };
  const server = await listen((req, res) => {
    void (async () => {
      if (req.method === 'POST' && upstream.refuseNext) {
        upstream.refuseNext = false;
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ type: 'unauthorized', code: 'unauthorized' }] }));
        return;
      }
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type', 'accept']) {
        const value = req.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      const payload = req.method === 'POST' ? await body(req) : undefined;
      const answer = await fetch(`${upstream.target}${req.url ?? ''}`, {
        method: req.method,
        headers,
        ...(payload && { body: payload }),
      });
      const text = Buffer.from(await answer.arrayBuffer());
      const gate = req.method === 'POST' ? hold : null;
      if (gate) {
        hold = null;
        gate.answered();
        await gate.released;
      }
      res.writeHead(answer.status, {
        'content-type': answer.headers.get('content-type') ?? 'application/json',
      });
      res.end(text);
    })();
  });
  upstream.url = server.url;
  upstream.close = server.close;
  return upstream;
}

let slow: SlowUpstream;
let stack: Stack;
let customer: CustomerApp;
let worker: RelayWorker;

beforeAll(async () => {
  slow = await startSlowUpstream();
  stack = await startStack({
    simulator: { stepDelayMs: 0 },
    env: { SIGNALWIRE_SPACE_URL: slow.url, RELAY_RETRY_SCHEDULE: '50ms' },
  });
  slow.target = stack.sim.url;
  // Token-authenticated callbacks are relayed signed with the first key: the simulator's here.
  customer = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  worker = startRelayWorker(stack.app, { tuning: { statsEveryMs: 50 } });
});

afterAll(async () => {
  await worker.stop();
  await stack.close();
  await customer.close();
  await slow.close();
});

const db = () => stack.app.database.db;

async function relayed(id: string, count: number) {
  return eventually(() => {
    const got = customer.received.filter((r) => r.messageId === id);
    return got.length >= count && got;
  });
}

async function intents(): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM send_intents`.execute(
    db(),
  );
  return rows[0]!.n;
}

describe.each([
  ['cxml', '+15557771000', ['queued', 'sent', 'delivered']],
  ['native', '+15558881000', ['queued', 'initiated', 'sent', 'delivered']],
] as const)('%s API', (api, to, statuses) => {
  test('When every callback is stored before the proxy records the send, then each is relayed to the caller’s own callback once, in order, signed', async () => {
    const callback = customer.callbackUrl(`/early/${api}`);
    const held = slow.holdNext();
    const sending = stack.send(api, to, { body: 'early callbacks', statusCallback: callback });
    await held.answered;
    await stack.sim.waitForIdle();
    // Every callback is stored and the proxy has not recorded the send yet.
    const early = await db()
      .selectFrom('messages')
      .select(['id', 'sent_via_proxy', 'client_status_callback'])
      .where('to', '=', to)
      .where('sent_via_proxy', '=', false)
      .orderBy('created_at', 'desc')
      .executeTakeFirstOrThrow();
    expect(early.client_status_callback).toBe(callback);
    held.release();
    const id = await sending;
    expect(id).toBe(early.id);

    const received = await relayed(id, statuses.length);
    expect(received.map((r) => r.status)).toEqual(statuses);
    expect(received.every((r) => r.valid && r.path === `/early/${api}`)).toBe(true);
    const message = (await stack.message(id))!;
    expect(message).toMatchObject({ sent_via_proxy: true, client_status_callback: callback });
    const jobs = await db()
      .selectFrom('relay_jobs')
      .select(['event_seq'])
      .where('message_id', '=', id)
      .orderBy('id')
      .execute();
    // One job per callback (never the proxy's own queued), in the events' order.
    const callbackSeqs = (message.history ?? [])
      .filter((h) => h.source === 'callback')
      .map((h) => h.seq);
    expect(jobs.map((j) => Number(j.event_seq))).toEqual(callbackSeqs);
    expect(await intents()).toBe(0);
  });

  test('When the proxy records the send first, then the relays are the same and no intent is left', async () => {
    const callback = customer.callbackUrl(`/late/${api}`);
    const id = await stack.send(api, to, { body: 'proxy first', statusCallback: callback });
    await stack.sim.waitForIdle();
    const received = await relayed(id, statuses.length);
    expect(received.map((r) => r.status)).toEqual(statuses);
    expect(received.every((r) => r.valid)).toBe(true);
    expect(await intents()).toBe(0);
  });
});

test('When a send is refused by SignalWire, then its intent goes at once; an expired intent goes with the next send', async () => {
  await sql`INSERT INTO send_intents (ref, client_status_callback, created_at)
    VALUES ('expired-ref', 'https://app.example.com/cb', now() - interval '31 days'),
           ('recent-ref', 'https://app.example.com/cb', now() - interval '1 day')`.execute(db());
  slow.refuseNext = true;
  await expect(
    stack.send('native', '+15558881000', {
      body: 'refused',
      statusCallback: customer.callbackUrl('/refused'),
    }),
  ).rejects.toThrow(/native send: 401/);
  const { rows } = await sql<{ ref: string }>`SELECT ref FROM send_intents ORDER BY ref`.execute(
    db(),
  );
  expect(rows.map((r) => r.ref)).toEqual(['recent-ref']);
});
