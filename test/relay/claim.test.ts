import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { KyselyPlugin, RawNode } from 'kysely';
import { migrateToLatest } from '../../src/db/migrate';
import { claimDueJobs } from '../../src/relay/relay.repository';
import type { ClaimLimits, RelayJobRow } from '../../src/relay/relay.repository';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The relay's claim (src/relay/relay.repository.ts) on a real PostgreSQL: shared among the
 * destination hosts that have due jobs, within each host's cap, and — with the index of
 * migration 0010 — without reading the backlog of a host it gives nothing to.
 */

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterEach(async () => {
  await database.db.deleteFrom('relay_jobs').execute();
});

afterAll(() => database.destroy());

/**
 * `count` due jobs of `host`, one per message, due `ageSeconds` ago and later by a millisecond
 * each; `chain` jobs per message instead make each message's jobs a chain (only its first due).
 */
async function seedJobs(host: string, count: number, ageSeconds: number, chain = 1) {
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload, next_attempt_at)
    SELECT ${randomUUID()}::text || '-' || (g / ${chain}::int), ${host}::text || '/hook', ${host},
      'POST', '\\x00'::bytea,
      now() - ${ageSeconds}::int * interval '1 second' + g * interval '1 millisecond'
    FROM generate_series(0, ${count - 1}::int) AS g`.execute(database.db);
}

const limits = (limit: number, caps: Record<string, number> = {}): ClaimLimits => ({
  limit,
  perHost: 64,
  caps: new Map(Object.entries(caps)),
});

function byHost(jobs: readonly RelayJobRow[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const job of jobs) counts[job.host] = (counts[job.host] ?? 0) + 1;
  return counts;
}

test('When several hosts have due jobs, then a claim gives each an equal share of it, oldest first, within its cap', async () => {
  await seedJobs('https://backlog.example', 100, 3_600); // older than anyone else's
  await seedJobs('https://b.example', 5, 60);
  await seedJobs('https://c.example', 3, 60);
  await seedJobs('https://paused.example', 2, 7_200);

  const jobs = await claimDueJobs(
    database.db,
    limits(12, { 'https://c.example': 1, 'https://paused.example': 0 }),
    30_000,
  );
  // Three hosts may take jobs: a share of 4 each, c capped at 1.
  expect(byHost(jobs)).toEqual({
    'https://backlog.example': 4,
    'https://b.example': 4,
    'https://c.example': 1,
  });
  const oldest = await database.db
    .selectFrom('relay_jobs')
    .select('id')
    .where('host', '=', 'https://backlog.example')
    .orderBy('next_attempt_at')
    .limit(4)
    .execute();
  expect(jobs.filter((j) => j.host === 'https://backlog.example').map((j) => j.id)).toEqual(
    oldest.map((j) => j.id),
  );

  // Leased: the next claim takes the next ones; b has one left, c two (still capped at 1).
  const next = await claimDueJobs(database.db, limits(12, { 'https://c.example': 1 }), 30_000);
  expect(next.some((job) => jobs.some((claimed) => claimed.id === job.id))).toBe(false);
  expect(byHost(next)).toMatchObject({ 'https://b.example': 1, 'https://c.example': 1 });
  expect(byHost(next)['https://paused.example']).toBe(2);
});

test('When a claim has less room than the hosts’ shares, then every host’s oldest job comes before any host’s second', async () => {
  await seedJobs('https://old.example', 50, 3_600);
  await seedJobs('https://new.example', 50, 60);
  const jobs = await claimDueJobs(database.db, limits(3), 30_000);
  expect(byHost(jobs)).toEqual({ 'https://old.example': 2, 'https://new.example': 1 });
});

test('When a message has an earlier job still pending, then only the earlier one is claimed', async () => {
  await seedJobs('https://chain.example', 6, 60, 3); // two messages, three jobs each
  const jobs = await claimDueJobs(database.db, limits(64), 30_000);
  expect(jobs).toHaveLength(2);
  expect(new Set(jobs.map((job) => job.message_id)).size).toBe(2);
});

/** Rows the statement read from relay_jobs, from EXPLAIN ANALYZE of the claim as it runs. */
async function rowsReadByClaim(claim: ClaimLimits): Promise<number> {
  let plan: unknown;
  const explain: KyselyPlugin = {
    transformQuery({ node }) {
      if (node.kind !== 'RawNode') return node;
      const raw = node as RawNode;
      const [first, ...rest] = raw.sqlFragments;
      return { ...raw, sqlFragments: [`EXPLAIN (ANALYZE, FORMAT JSON) ${first}`, ...rest] };
    },
    transformResult({ result }) {
      plan = (result.rows[0] as Record<string, unknown>)['QUERY PLAN'];
      return Promise.resolve({ rows: [] });
    },
  };
  await database.db
    .transaction()
    .execute(async (trx) => {
      await claimDueJobs(trx.withPlugin(explain), claim, 30_000);
      throw new Error('rollback');
    })
    .catch(() => undefined);
  let rows = 0;
  const visit = (node: Record<string, unknown>): void => {
    if (node['Relation Name'] === 'relay_jobs') {
      const read = Number(node['Actual Rows'] ?? 0) + Number(node['Rows Removed by Filter'] ?? 0);
      rows += read * Number(node['Actual Loops'] ?? 1);
    }
    for (const child of (node['Plans'] as Array<Record<string, unknown>> | undefined) ?? [])
      visit(child);
  };
  visit((plan as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan);
  return rows;
}

test('When a paused host has 20 000 due jobs older than the others’, then a claim reads a few rows, not its backlog', async () => {
  await seedJobs('https://paused.example', 20_000, 3_600);
  await seedJobs('https://busy.example', 20_000, 3_000); // may take one more job
  for (let i = 0; i < 10; i++) await seedJobs(`https://app${i}.example`, 3, 60);
  await seedJobs('https://app0.example', 20_000, -3_600); // retries due in an hour
  await sql`ANALYZE relay_jobs`.execute(database.db);

  const claim = limits(64, { 'https://paused.example': 0, 'https://busy.example': 1 });
  const rows = await rowsReadByClaim(claim);
  // About a dozen per host (150 here): its walk step, its first job, its share and the
  // message-order checks. Read in due order, the paused host's 20 000 came first on every
  // claim; a host's scan that did not stop at its first job not yet due would read app0's
  // 20 000 retries.
  expect(rows).toBeLessThan(500);
  expect(byHost(await claimDueJobs(database.db, claim, 30_000))).toMatchObject({
    'https://busy.example': 1,
    'https://app0.example': 3,
  });
});

test('When migration 0010 was interrupted and left its index invalid, then running it again builds it anew', async () => {
  const index = () =>
    sql<{ valid: boolean }>`
      SELECT i.indisvalid AS valid FROM pg_index i
      WHERE i.indexrelid = 'relay_jobs_host_due_idx'::regclass`.execute(database.db);
  expect((await index()).rows).toEqual([{ valid: true }]);
  // What a cancelled CREATE INDEX CONCURRENTLY leaves behind, and no record of the migration.
  await sql`UPDATE pg_index SET indisvalid = false
    WHERE indexrelid = 'relay_jobs_host_due_idx'::regclass`.execute(database.db);
  // With the files after it (the runner applies files in order), undone.
  await sql`DELETE FROM kysely_migration WHERE name >= '0010_relay_jobs_host_idx'`.execute(
    database.db,
  );
  await sql`DROP TABLE relay_hosts`.execute(database.db);
  expect(await migrateToLatest(database.db)).toEqual([
    '0010_relay_jobs_host_idx',
    '0011_relay_jobs_delivered_idx',
    '0012_relay_hosts',
    '0013_feed_removal_steps',
    '0014_messages_sweep_due_idx',
    '0015_messages_stuck_created_idx',
    '0016_feed_epoch',
    '0017_messages_api_idx',
    '0018_stats_rollups_search_path',
  ]);
  expect((await index()).rows).toEqual([{ valid: true }]);
});
