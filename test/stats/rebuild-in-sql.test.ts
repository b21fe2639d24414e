import { spawn } from 'node:child_process';
import path from 'node:path';
import { sql } from 'kysely';
import {
  FINAL_WITHIN_MS,
  latencyBucketFloors,
  contributionOfRow,
  latencyBucket,
  rollupSums,
} from '../../src/messages/rollup';
import type { StoredRollupFacts } from '../../src/messages/rollup';
import { rebuildRollups } from '../../src/stats/stats.repository';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * `npm run stats:rebuild` counts the rollups in PostgreSQL (src/stats/stats.repository.ts
 * recount): the same keys the write path's contributions give (src/messages/rollup.ts), in
 * memory that does not grow with the store. It ran in a pod beside the service (512 MiB: Node's
 * heap about 256 MiB) and counted in the process, one object per rollup key of the whole
 * history: eleven days at the scale benchmark's rate ran out of heap, and the README's repair
 * after a rolling upgrade could not be run.
 */

jest.setTimeout(240_000);

const REPO_ROOT = path.resolve(__dirname, '../..');

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await database?.destroy();
});

async function clearMessages(): Promise<void> {
  await sql`TRUNCATE messages CASCADE`.execute(database.db);
  await sql`DELETE FROM stats_deltas`.execute(database.db);
}

test('For every whole millisecond next to a latency bucket’s edge, PostgreSQL’s width_bucket over the floors gives the bucket latencyBucket gives', async () => {
  const values = new Set<number>([0, 1, 2, FINAL_WITHIN_MS, Number.MAX_SAFE_INTEGER]);
  for (const floor of latencyBucketFloors()) {
    for (const near of [floor - 1, floor, floor + 1]) if (near >= 0) values.add(near);
  }
  // And what lies between the edges: spread over every order of magnitude.
  for (let i = 0; i < 5_000; i++) values.add(Math.floor(Math.pow(10, (i / 5_000) * 15)));
  const { rows } = await sql<{ ms: string; bucket: number }>`
    SELECT ms::text, width_bucket(ms, ${latencyBucketFloors()}::bigint[]) AS bucket
    FROM unnest(${[...values].map(String)}::bigint[]) AS ms`.execute(database.db);
  const disagreeing = rows.filter((row) => row.bucket !== latencyBucket(Number(row.ms)));
  expect(disagreeing).toEqual([]);
  expect(rows).toHaveLength(values.size);
});

test('When messages of every kind are recounted, then each rollup row is what the write path’s contributions of those messages add up to', async () => {
  await clearMessages();
  // Latencies at and around bucket edges, in microseconds (node-postgres reads whole
  // milliseconds), null (not final) and negative (final through an older event).
  const latenciesUs: Array<number | null> = [null, -5_000_000, 0, 1, 999, 1_000, 1_001];
  for (const floor of latencyBucketFloors().slice(0, 260)) {
    for (const us of [floor * 1000 - 1, floor * 1000, floor * 1000 + 999]) latenciesUs.push(us);
  }
  latenciesUs.push(FINAL_WITHIN_MS * 1000, FINAL_WITHIN_MS * 1000 + 1_000);
  const count = latenciesUs.length * 3;
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
                          created_at, updated_at, last_event_at, first_terminal_at,
                          error_code, conflict)
    SELECT 'rebuild-' || i, CASE WHEN i % 2 = 0 THEN 'cxml' ELSE 'native' END,
           (ARRAY['delivered', 'failed', 'sent', 'undelivered'])[1 + i % 4], 'delivered', 50,
           c, c, c, c,
           c + make_interval(secs => (${latenciesUs}::bigint[])[1 + i % ${latenciesUs.length}]
                                     / 1000000.0),
           CASE WHEN i % 5 = 0 THEN '30003' END, i % 7 = 0
    FROM generate_series(0, ${count} - 1) AS i,
         LATERAL (SELECT timestamptz '2026-03-01T10:00:00Z'
                         + make_interval(secs => i * 1.234567) AS c) AS created`.execute(
    database.db,
  );

  const result = await rebuildRollups(database.db);

  const stored = await database.db
    .selectFrom('messages')
    .select(['created_at', 'first_terminal_at', 'api', 'status', 'error_code', 'conflict'])
    .execute();
  const expected = rollupSums();
  for (const message of stored) expected.add(contributionOfRow(message as StoredRollupFacts));
  const keyOf = (r: {
    minute: number;
    api: string;
    status: string;
    errorCode: string;
    latencyBucket: number;
  }) => `${r.minute}|${r.api}|${r.status}|${r.errorCode}|${r.latencyBucket}`;
  const expectedRows = new Map(
    expected
      .nonZero()
      .map((r) => [keyOf(r), [r.messages, r.conflicts, r.finalWithin10s].join('/')]),
  );
  const { rows: minutes } = await sql<{
    minute: Date;
    api: string;
    status: string;
    error_code: string;
    latency_bucket: number;
    messages: string;
    conflicts: string;
    final_within_10s: string;
  }>`SELECT * FROM stats_minutes`.execute(database.db);
  const rebuiltRows = new Map(
    minutes.map((r) => [
      keyOf({
        minute: r.minute.getTime(),
        api: r.api,
        status: r.status,
        errorCode: r.error_code,
        latencyBucket: r.latency_bucket,
      }),
      [r.messages, r.conflicts, r.final_within_10s].map(Number).join('/'),
    ]),
  );
  expect(rebuiltRows).toEqual(expectedRows);
  expect(result).toEqual({ messages: count, keys: expectedRows.size });

  // The hours are the minutes', summed.
  const { rows: hours } = await sql<{ differing: number }>`
    SELECT count(*)::int AS differing FROM (
      SELECT date_trunc('hour', minute, 'UTC') AS hour, api, status, error_code, latency_bucket,
             sum(messages) AS messages, sum(conflicts) AS conflicts,
             sum(final_within_10s) AS final_within_10s
      FROM stats_minutes GROUP BY 1, 2, 3, 4, 5
      EXCEPT SELECT hour, api, status, error_code, latency_bucket, messages, conflicts,
                    final_within_10s FROM stats_hours) d`.execute(database.db);
  expect(hours[0]!.differing).toBe(0);
});

function runRebuild(heapMb: number): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/stats/rebuild-cli.ts'], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: database.url,
      NODE_ENV: 'production',
      NODE_OPTIONS: `--max-old-space-size=${heapMb}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

test('When the store holds more rollup keys than the rebuild’s heap could hold as objects, then stats:rebuild still completes and counts them all', async () => {
  await clearMessages();
  // 300 000 messages, 50 keys a minute (the scale benchmark's rate, ~53): 300 000 keys, about
  // 100 MiB as objects in the process — more than the whole 64 MiB heap given here.
  const messages = 300_000;
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
                          created_at, updated_at, last_event_at, first_terminal_at)
    SELECT 'SM' || lpad(i::text, 30, '0'), 'cxml', 'delivered', 'delivered', 50, t, c, t, t, t
    FROM generate_series(0, ${messages} - 1) AS i,
         LATERAL (SELECT timestamptz '2026-01-01T00:00:00Z'
                         + make_interval(mins => i / 50) AS c) AS created,
         LATERAL (SELECT c + make_interval(secs => round(100 * power(1.08, i % 50)) / 1000.0)
                  AS t) AS done`.execute(database.db);

  const { code, output } = await runRebuild(64);
  expect({ code, said: output.includes('stats rollups rebuilt') }).toEqual({
    code: 0,
    said: true,
  });
  expect(output).toContain(`"messages":${messages}`);
  const { rows } = await sql<{ messages: string }>`
    SELECT sum(messages)::text AS messages FROM stats_hours`.execute(database.db);
  expect(rows[0]!.messages).toBe(String(messages));
});
