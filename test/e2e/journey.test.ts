import type { HistoryDto } from '../../src/messages/message-dto';
import { startReconcilingStack } from '../reconcile/reconciling-stack';
import type { ReconcilingStack } from '../reconcile/reconciling-stack';
import {
  countStatuses,
  messageWithHistory,
  nonZero,
  readFeed,
  relayedStatuses,
  settled,
  statsNow,
  toBeRelayed,
} from './journey-support';

/**
 * The features that tell of a message's statuses, checked against each other on the whole
 * stack (proxy, simulator as SignalWire, signed callbacks, the sweep's lookups, the relay to
 * the app's own callback): each is tested alone elsewhere, but a dashboard reads the change
 * feed and /v1/stats while the app counts its relays, and a disagreement between them is what
 * a customer sees.
 */

let running: ReconcilingStack;
beforeAll(async () => {
  running = await startReconcilingStack();
});
afterAll(() => running.close());

// Every scenario of the simulator (scenarios.ts): delivered, undelivered, failed, duplicates,
// out of order, no receipt (stuck after the sweep's lookups), lost callback (the sweep finds
// the delivery).
const SCENARIOS = ['1000', '0003', '0004', '0005', '0006', '0007', '0008'];

const step = (e: { seq: number | string; status: string; source: string }) =>
  `${e.seq}:${e.status}:${e.source}`;

test('When messages of every scenario are sent through both APIs and have settled, then their history, the change feed, the relays to the app and /v1/stats agree', async () => {
  const { stack, app } = running;
  const sent: Array<{ id: string; api: 'cxml' | 'native'; label: string }> = [];
  for (const api of ['cxml', 'native'] as const) {
    for (const suffix of SCENARIOS) {
      for (const mms of [false, true]) {
        const to = `+1555${mms ? '7' : '6'}${api === 'cxml' ? '1' : '2'}${suffix}`;
        const id = await stack.send(api, to, {
          body: `journey ${suffix}`,
          mms,
          statusCallback: app.callbackUrl(`/${api}/status`),
        });
        sent.push({ id, api, label: `${api} ${mms ? 'mms' : 'sms'} ${to}` });
      }
    }
  }
  await settled(running);

  const { events: feed } = await readFeed(stack, { limit: 7 });
  // Each event once: a repeated seq is an event a follower would count twice.
  const seqs = feed.map((e) => e.seq);
  expect(seqs.filter((seq, i) => seqs.indexOf(seq) !== i)).toEqual([]);

  // Per message, what each feature says, keyed by a label that names the scenario: a diff then
  // shows which message disagrees and how.
  const historyOf: Record<string, string[]> = {};
  const feedOf: Record<string, string[]> = {};
  const statusOf: Record<string, string> = {};
  const lastFeedStatusOf: Record<string, string | undefined> = {};
  const relayedOf: Record<string, string[]> = {};
  const toRelayOf: Record<string, string[]> = {};
  const badRelays: string[] = [];
  for (const { id, api, label } of sent) {
    const message = await messageWithHistory(stack, id);
    const history: HistoryDto[] = message.history;
    const events = feed.filter((e) => e.message_id === id);
    historyOf[label] = history.map(step);
    feedOf[label] = events.map(step);
    statusOf[label] = message.status;
    lastFeedStatusOf[label] = events.at(-1)?.message_status;
    // The app is told each status SignalWire reported (not the proxy's own `queued`), once,
    // in the order they were stored, spelt as SignalWire spells callbacks — a late callback of
    // a status a lookup already told excepted (a loaded machine delays callbacks past lookups).
    relayedOf[label] = relayedStatuses(app, id);
    toRelayOf[label] = toBeRelayed(api, history);
    for (const relay of app.received.filter((r) => r.messageId === id)) {
      if (!relay.valid) badRelays.push(`${label}: ${relay.status} signed wrong`);
      if (relay.path !== `/${api}/status`)
        badRelays.push(`${label}: ${relay.status} to ${relay.path}`);
    }
  }
  expect(feedOf).toEqual(historyOf);
  // The feed's message_status after a message's last event is the message's status now.
  expect(lastFeedStatusOf).toEqual(statusOf);
  expect(relayedOf).toEqual(toRelayOf);
  expect(badRelays).toEqual([]);

  const stats = await statsNow(stack);
  expect(nonZero(stats.by_status)).toEqual(countStatuses(Object.values(statusOf)));
});
