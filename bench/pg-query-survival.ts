import { PerformanceObserver, constants } from 'node:perf_hooks';
import { Client } from 'pg';
import '../src/db/database'; // the service's type parsers (int8 as number)

/**
 * `node --import tsx [--trace-gc-nvp] bench/pg-query-survival.ts`: the change feed's 100-row
 * read, one statement after another on one node-postgres connection, for PROBE_SECONDS (8);
 * then the young-generation GC pauses meanwhile. PG_QUERY_FORM says how the statement is
 * handed to node-postgres:
 * - `promise` (default): `client.query(config)`, its promise awaited — what src/db/kysely-pool.ts
 *   does for every statement;
 * - `callback`: `client.query(config, callback)` inside a promise of our own.
 *
 * Measured on this machine (bench/feed-gc-probe.ts's store): with `promise`, about 35 % of
 * what the loop allocates survives each scavenge and is promoted at the next (--trace-gc-nvp:
 * new_space_survived ≈ 3.5 MB, promoted ≈ the previous survivors) and a scavenge stops the
 * loop 5–9 ms; with `callback`, 2 kB survive and a scavenge takes 0.3–0.5 ms. With
 * `--no-allocation-site-pretenuring` the promise form survives no more than the callback
 * form, and `--trace-pretenuring-statistics` shows allocation sites moving to "tenure" with
 * every sampled object alive: V8 allocates the rows' container in the old generation, so
 * every row, string and Date put into it survives the scavenges until a full GC.
 *
 * Env: DATABASE_URL (bench:scale's store, e.g. postgres://…/sw_status_scale_1000000),
 * PG_QUERY_FORM, PROBE_SECONDS.
 */

const SECONDS = Number(process.env.PROBE_SECONDS ?? 8);
const FORM = process.env.PG_QUERY_FORM ?? 'promise';
const FEED_LIKE_PAGE = `
  SELECT seq, tx, message_id, api, status, raw_status, error_code, error_message, source,
         provider_timestamp, received_at, message_status
  FROM status_events WHERE (tx, seq) > ($1::xid8, $2::bigint) ORDER BY tx, seq LIMIT 100`;

interface Page {
  rows: unknown[];
}

async function main(): Promise<void> {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  const { rows: positions } = await client.query<{ tx: string; seq: number }>(
    'SELECT tx::text AS tx, seq FROM status_events TABLESAMPLE SYSTEM (1) LIMIT 2000',
  );
  const pauses: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) pauses.push(entry.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const until = Date.now() + SECONDS * 1000;
  let pages = 0;
  while (Date.now() < until) {
    const { tx, seq } = positions[pages++ % positions.length]!;
    const config = { name: 'feed_like_page', text: FEED_LIKE_PAGE, values: [tx, seq] };
    const page =
      FORM === 'callback' ? await withCallback(client, config) : await client.query(config);
    if (page.rows.length === 0) throw new Error('an empty page: is this the scale store?');
  }
  observer.disconnect();
  await client.end();
  pauses.sort((a, b) => a - b);
  const at = (q: number) => pauses[Math.floor(q * (pauses.length - 1))]?.toFixed(2);
  console.log(
    `${FORM}: ${pages} pages in ${SECONDS} s; ${pauses.length} scavenges, pause p50 ${at(0.5)} p90 ${at(0.9)} max ${at(1)} ms`,
  );
}

function withCallback(
  client: Client,
  config: { name: string; text: string; values: unknown[] },
): Promise<Page> {
  return new Promise((resolve, reject) => {
    client.query(config, (error: Error | undefined, result: Page) =>
      error ? reject(error) : resolve(result),
    );
  });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
