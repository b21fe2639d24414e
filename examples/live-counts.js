#!/usr/bin/env node
'use strict';
/**
 * A dashboard's polling loop, complete: follows sw-status's change feed and keeps live counts
 * of messages by status, with the delivery rate from the stats API. Node ≥ 18, no dependencies.
 *
 *   SW_STATUS_URL=http://127.0.0.1:8081 SW_STATUS_TOKEN=dev-token node examples/live-counts.js
 *
 * Prints one JSON line whenever the counts change. CURSOR_FILE=path keeps the feed position
 * across restarts (the feed resumes exactly where it stopped: no event missed or seen twice);
 * the counts themselves live in memory and start again from the events after that position.
 *
 * The rules a consumer of GET /v1/events follows:
 *  - Keep `next_cursor` and pass it back as `after`; it is always present. A page may be empty
 *    (or hold fewer than `limit` events) while the cursor moves on: keep following it.
 *  - Use `wait` (long-poll, up to 30 s): the answer comes as soon as an event commits, on any
 *    replica behind the load balancer.
 *  - `message_status` is the message's status right after the event: the last one seen for a
 *    message is its current status.
 *  - 5xx / network errors: retry the same cursor after a pause (nothing is lost meanwhile).
 *    A 400 `invalid_cursor` means the cursor was not issued by this deployment: start again.
 *  - A 410 `cursor_expired` means following the cursor would miss events (retention removed
 *    some after it, or the database never reached it: restored from a dump, say). Take the end
 *    of the feed (`after=now`), read the current state from /v1/messages, then follow from that
 *    end: an event committed between the two is seen twice, and its `message_status` is the
 *    same both times.
 */

const fs = require('node:fs');

const RETRY_MS = [1_000, 2_000, 5_000, 10_000];

async function call(baseUrl, token, path, etag, signal) {
  const headers = { authorization: `Bearer ${token}` };
  if (etag) headers['if-none-match'] = etag;
  // The signal ends a long-poll at once when the loop is stopped.
  const res = await fetch(`${baseUrl}${path}`, { headers, signal });
  const body = res.status === 200 ? await res.json() : await res.text();
  return { status: res.status, body, etag: res.headers.get('etag') };
}

/**
 * Follows the feed until `signal` aborts. Calls onCounts({ counts, delivery_rate, cursor })
 * after each change. Resolves with the final state.
 */
async function followFeed({
  baseUrl,
  token,
  cursor,
  onCounts = () => {},
  signal,
  statsEveryMs = 10_000,
  since = new Date(),
}) {
  const statusOf = new Map(); // message id → its current status
  const state = { counts: {}, delivery_rate: null, cursor: undefined };
  let statsEtag;
  let statsAt = 0;
  let failures = 0;

  const recount = () => {
    const counts = {};
    for (const status of statusOf.values()) counts[status] = (counts[status] ?? 0) + 1;
    state.counts = counts;
  };

  if (!cursor) {
    // Start at the current end: what happens from now on.
    const now = await call(baseUrl, token, '/v1/events?after=now');
    if (now.status !== 200) throw new Error(`GET /v1/events?after=now: ${now.status} ${now.body}`);
    cursor = now.body.next_cursor;
  }
  state.cursor = cursor;
  onCounts({ ...state });

  while (!signal?.aborted) {
    let page;
    try {
      page = await call(
        baseUrl,
        token,
        `/v1/events?limit=500&wait=20&after=${encodeURIComponent(cursor)}`,
        undefined,
        signal,
      );
    } catch {
      page = { status: 0 };
    }
    if (page.status === 400 && String(page.body).includes('invalid_cursor')) {
      throw new Error('the saved cursor is not valid for this deployment: start without it');
    }
    if (page.status === 401) throw new Error('unauthorized: check SW_STATUS_TOKEN');
    if (page.status === 410) {
      try {
        cursor = await resync(baseUrl, token, since, statusOf);
      } catch {
        await sleep(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)], signal);
        continue;
      }
      recount();
      state.cursor = cursor;
      onCounts({ ...state });
      continue;
    }
    if (page.status !== 200) {
      await sleep(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)], signal);
      continue;
    }
    failures = 0;
    for (const event of page.body.data) statusOf.set(event.message_id, event.message_status);
    cursor = page.body.next_cursor;
    state.cursor = cursor;
    let changed = page.body.data.length > 0;
    if (changed) recount();

    // The delivery-rate panel: GET /v1/stats, revalidated with its ETag (a 304 costs nothing).
    if (Date.now() - statsAt >= statsEveryMs) {
      statsAt = Date.now();
      const stats = await call(
        baseUrl,
        token,
        `/v1/stats?created_since=${since.toISOString()}`,
        statsEtag,
      ).catch(() => null);
      if (stats?.status === 200) {
        statsEtag = stats.etag;
        changed = changed || stats.body.delivery_rate !== state.delivery_rate;
        state.delivery_rate = stats.body.delivery_rate;
      }
    }
    if (changed) onCounts({ ...state });
  }
  return state;
}

/**
 * After a 410: the messages' current statuses, read afresh, and the feed's end to follow from.
 * The end is taken first, so nothing that commits while the list is read can fall between.
 */
async function resync(baseUrl, token, since, statusOf) {
  const end = await call(baseUrl, token, '/v1/events?after=now');
  if (end.status !== 200) throw new Error(`GET /v1/events?after=now: ${end.status}`);
  const current = new Map();
  let next = null;
  do {
    const query = `created_since=${since.toISOString()}&order=created&limit=500`;
    const list = await call(
      baseUrl,
      token,
      `/v1/messages?${query}${next ? `&cursor=${encodeURIComponent(next)}` : ''}`,
    );
    if (list.status !== 200) throw new Error(`GET /v1/messages: ${list.status}`);
    for (const message of list.body.data) current.set(message.id, message.status);
    next = list.body.next_cursor;
  } while (next);
  statusOf.clear();
  for (const [id, status] of current) statusOf.set(id, status);
  return end.body.next_cursor;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function main() {
  const baseUrl = (process.env.SW_STATUS_URL ?? 'http://127.0.0.1:8081').replace(/\/+$/, '');
  const token = process.env.SW_STATUS_TOKEN ?? 'dev-token';
  const cursorFile = process.env.CURSOR_FILE;
  const saved =
    cursorFile && fs.existsSync(cursorFile)
      ? fs.readFileSync(cursorFile, 'utf8').trim()
      : undefined;
  const controller = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => controller.abort());
  await followFeed({
    baseUrl,
    token,
    cursor: saved || undefined,
    signal: controller.signal,
    statsEveryMs: Number(process.env.STATS_EVERY_MS ?? 10_000),
    onCounts(state) {
      if (cursorFile) fs.writeFileSync(cursorFile, state.cursor);
      process.stdout.write(`${JSON.stringify(state)}\n`);
    },
  });
}

module.exports = { followFeed };

if (require.main === module) {
  main().catch((error) => {
    console.error(error.message);
    process.exit(1);
  });
}
