import fc from 'fast-check';
import { sql } from 'kysely';
import { randomUUID } from 'node:crypto';
import { normalizeCxmlCallback, normalizeNativeCallback } from '../../src/callbacks/normalize';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { rankOf } from '../../src/messages/statuses';
import { lookupEvent, tellsNews } from '../../src/reconcile/lookup-event';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { seedProxiedMessage } from '../relay/support';

/**
 * What the app is told after a reconciliation lookup (src/messages/lookup-repeats.ts), over
 * short random stories of lookups and late callbacks (native and compatibility; codes numeric
 * and named; error messages alone; replays; a callback sent twice): recorded one event per
 * transaction and with each run of callbacks in one batch (a spool replay), the app is told the
 * same; and it is told exactly what a plain model says — going through the history in order,
 * a callback is held back when the last event told at its rank is a lookup's of the same status
 * and it brings no error news; every other event is told.
 */
jest.setTimeout(120_000);

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const PROJECT = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';
const BASE = Date.parse('2026-12-06T10:00:00Z');
let clock = Date.now();
type Api = 'native' | 'cxml';

type Step =
  | { kind: 'lookup'; status: string; code: string | null; message: string | null }
  | {
      kind: 'callback';
      status: string;
      code: string | null;
      message: string | null;
      second: number;
      replay: boolean;
      twice: boolean;
    };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('lookup' as const),
    status: fc.constantFrom('initiated', 'sent', 'delivered', 'undelivered', 'failed'),
    code: fc.constantFrom(null, '30003', '30007', 'carrier_violation'),
    message: fc.constantFrom(null, 'boom'),
  }),
  fc.record({
    kind: fc.constant('callback' as const),
    status: fc.constantFrom('sending', 'sent', 'delivered', 'undelivered', 'failed', 'read'),
    code: fc.constantFrom(null, null, '30003', '30007', 'unreachable_destination_handset'),
    message: fc.constantFrom(null, null, 'boom', 'bang'),
    replay: fc.boolean(),
    twice: fc.boolean(),
    second: fc.integer({ min: 1, max: 3 }),
  }),
);

function callbackEvent(api: Api, id: string, s: Extract<Step, { kind: 'callback' }>): StatusEvent {
  const fields = {
    id,
    project_id: PROJECT,
    status: s.status,
    error_code: s.code,
    error_message: s.message,
    timestamp: new Date(BASE + s.second * 1000).toISOString(),
  };
  clock += 5;
  const event =
    api === 'native'
      ? normalizeNativeCallback(fields, { receivedAt: new Date(clock), storeBody: false })
      : normalizeCxmlCallback(
          {
            MessageSid: id,
            MessageStatus: s.status,
            ...(s.code === null ? {} : { ErrorCode: s.code }),
            ...(s.message === null ? {} : { ErrorMessage: s.message }),
          },
          { receivedAt: new Date(clock), storeBody: false },
        );
  event.relay = {
    method: 'POST',
    contentType: 'application/json',
    body: Buffer.from(JSON.stringify({ status: s.status, error_code: s.code, src: 'cb' })).toString(
      'base64',
    ),
    keyRef: null,
  };
  if (s.replay) event.source = 'replay';
  return event;
}

async function runLookup(
  api: Api,
  id: string,
  s: Extract<Step, { kind: 'lookup' }>,
): Promise<void> {
  const row = await t.database.db
    .selectFrom('messages')
    .select(['status', 'error_code'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  const event = lookupEvent(
    { id, api, projectId: PROJECT, status: row.status, errorCode: row.error_code },
    {
      [api === 'native' ? 'id' : 'sid']: id,
      project_id: PROJECT,
      status: s.status,
      error_code: s.code,
      error_message: s.message,
    },
    new Date((clock += 5)),
    false,
  );
  if (!event) return;
  await recordEvents(t.database.db, [event], {
    existingOnly: true,
    stillNews: (answer, stored) => tellsNews(stored, answer),
  });
}

interface Told {
  source: string;
  status: string;
  code: string | null;
  message?: string | null;
}

async function relays(id: string): Promise<Told[]> {
  const { rows } = await sql<{
    source: string;
    status: string;
    error_code: string | null;
    error_message: string | null;
  }>`SELECT e.source, e.status, e.error_code, e.error_message FROM relay_jobs j
     JOIN status_events e ON e.seq = j.event_seq WHERE j.message_id = ${id} ORDER BY j.id`.execute(
    t.database.db,
  );
  return rows.map((r) => ({ source: r.source, status: r.status, code: r.error_code }));
}

async function history(id: string) {
  const { rows } = await sql<{
    seq: string;
    source: string;
    status: string;
    error_code: string | null;
    error_message: string | null;
  }>`SELECT seq, source, status, error_code, error_message FROM status_events
     WHERE message_id = ${id} AND source <> 'proxy' ORDER BY seq`.execute(t.database.db);
  return rows;
}

async function play(api: Api, steps: Step[], batched: boolean): Promise<string> {
  const id = await seedProxiedMessage(t.database.db, api, 'http://127.0.0.1:9/app', randomUUID());
  let pending: StatusEvent[] = [];
  const flush = async () => {
    if (pending.length > 0) await recordEvents(t.database.db, pending);
    pending = [];
  };
  for (const s of steps) {
    if (s.kind === 'lookup') {
      await flush();
      await runLookup(api, id, s);
    } else if (batched) {
      pending.push(callbackEvent(api, id, s));
      if (s.twice) pending.push(callbackEvent(api, id, s));
    } else {
      await recordEvents(t.database.db, [callbackEvent(api, id, s)]);
      if (s.twice) await recordEvents(t.database.db, [callbackEvent(api, id, s)]);
    }
  }
  await flush();
  return id;
}

const numeric = (c: string) => /^\d+$/.test(c);
function errorNews(told: Told, code: string | null, message: string | null): boolean {
  if (code !== null)
    return told.code === null || (code !== told.code && numeric(code) === numeric(told.code));
  return told.code === null && (told.message ?? null) === null && message !== null;
}

/** Model: which stored non-proxy events should have been relayed, replayed in seq order. */
async function modelRelays(id: string): Promise<Told[]> {
  const lastTold = new Map<number, Told>();
  const out: Told[] = [];
  for (const e of await history(id)) {
    const rank = rankOf(e.status as never);
    const told = lastTold.get(rank);
    const ev = { source: e.source, status: e.status, code: e.error_code, message: e.error_message };
    if (
      e.source !== 'reconcile' &&
      told?.source === 'reconcile' &&
      told.status === e.status &&
      !errorNews(told, e.error_code, e.error_message)
    ) {
      continue; // a repeat: held back, so not what the app was told last
    }
    out.push(ev);
    lastTold.set(rank, ev);
  }
  return out;
}

const show = (xs: Told[]) => xs.map((x) => `${x.source}:${x.status}:${x.code ?? ''}`);

test.each(['native', 'cxml'] as const)(
  'When lookups and late %s callbacks come in any order, one per transaction or batched, then the app is told the same, and what the model says',
  async (api) => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 5 }), async (steps) => {
        const one = await play(api, steps, false);
        const many = await play(api, steps, true);
        const a = show(await relays(one));
        expect(show(await relays(many))).toEqual(a);
        expect(a).toEqual(show(await modelRelays(one)));
      }),
      { numRuns: 60, seed: 42, endOnFailure: true },
    );
  },
);
