import { sql } from 'kysely';
import type { KyselyPlugin } from 'kysely';
import { freePort } from '../../src/db/free-port';
import { createRelayExpiry } from '../../src/relay/relay-expiry';
import { claimExpiredJobs } from '../../src/relay/relay.repository';
import type { ExpiryCursor } from '../../src/relay/relay.repository';
import type { LookupFunction } from '../../src/relay/safe-agent';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, lookupTo, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * DESIGN §10: a relay is retried on RELAY_RETRY_SCHEDULE, "then the job is dead" — also when
 * its host stays down and the circuit breaker pauses it. A paused host's relays are not
 * claimed (only one trial request now and then), so before expiry they never used up their
 * schedule: an app that stayed down kept every relay pending, with no dead relay, no metric
 * and no alert, for as long as it was down.
 *
 * Scaled down: a schedule of 200 ms + 400 ms (600 ms in all), a breaker that opens after 2
 * failures and pauses 500 ms, doubling to 1 s — so a host counts as failing once every attempt
 * at it has failed for 2 s (twice the longest pause), and a relay expires 2 s after its
 * schedule would have ended.
 */
jest.setTimeout(60_000);

const WINDOW_MS = 2_000;
const SCHEDULE_MS = 600;

let t: RelayTestApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '200ms,400ms', RELAY_TIMEOUT_MS: '15000' });
});

afterEach(async () => {
  await t.reset();
  await t.database.db.deleteFrom('relay_jobs').execute();
  await t.database.db.deleteFrom('relay_hosts').execute();
});

afterAll(() => t.close());

/** A relay worker, as each replica runs one; `lookup`: where its name lookups lead. */
function startWorker({
  failureThreshold = 2,
  concurrency = 64,
  lookup,
  expireEveryMs = 50,
}: {
  failureThreshold?: number;
  concurrency?: number;
  lookup?: LookupFunction;
  expireEveryMs?: number;
} = {}): void {
  t.startWorker({
    lookup,
    tuning: {
      concurrency,
      statsEveryMs: 50,
      expireEveryMs,
      breaker: { failureThreshold, openMs: 500, maxOpenMs: WINDOW_MS / 2 },
    },
  });
}

/** A callback URL on a port nothing listens on: every request is refused. */
async function downUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}/status`;
}

/** One relay per message: a `sent` callback for each of `count` new messages. */
async function relaysTo(url: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = await seedProxiedMessage(t.database.db, 'cxml', url);
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    ids.push(id);
  }
  return ids;
}

/** One look of expiry's at `host`'s pending jobs, after `after`. */
const walk = (host: string, after: ExpiryCursor | null, limit: number) =>
  claimExpiredJobs(t.database.db, {
    host,
    after,
    limit,
    windowMs: WINDOW_MS,
    remainingMs: [600, 400, 0],
    leaseMs: 60_000,
  });

const jobsOf = (ids: readonly string[]) =>
  t.database.db
    .selectFrom('relay_jobs')
    .select(['id', 'message_id', 'state', 'attempts', 'last_error', 'updated_at', 'payload'])
    .where('message_id', 'in', ids)
    .orderBy('id')
    .execute();

test('When an app stays down, then its relays are dead once their schedule has run out, though the breaker paused its host', async () => {
  const url = await downUrl();
  // Enough that the breaker's trials (one request per pause, each a step of one relay's
  // schedule) could not have used up their schedules in the time allowed: 40 relays need 120
  // failed trials, one a second at most.
  const ids = await relaysTo(url, 40);
  const started = Date.now();
  startWorker();

  const jobs = await eventually(async () => {
    const rows = await jobsOf(ids);
    return rows.every((row) => row.state === 'dead') && rows;
  }, 30_000);
  const took = Date.now() - started;

  // Not before their schedule and the window had passed; long before the trials could have.
  expect(took).toBeGreaterThanOrEqual(SCHEDULE_MS + WINDOW_MS);
  expect(took).toBeLessThan(20_000);
  // Most were never sent again (no request, so no attempt counted).
  expect(jobs.filter((job) => job.attempts < 3).length).toBeGreaterThan(30);
  for (const job of jobs) {
    if (job.attempts < 3) {
      expect(job.last_error).toMatch(/ECONNREFUSED|connect/i);
      expect(job.last_error).toContain('the schedule ran out');
    }
    // Dead: the callback is kept for a retry, without the message's text.
    expect(job.payload).not.toBeNull();
  }
  const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM relay_hosts`.execute(
    t.database.db,
  );
  expect(Number(rows[0]!.n)).toBe(1);
});

test('When a message has several relays to a host that stays down, then a later one\u2019s schedule starts when the one before it is dead, not when it was written', async () => {
  const url = await downUrl();
  const host = new URL(url).origin;
  const id = await seedProxiedMessage(t.database.db, 'cxml', url);
  for (const status of ['sent', 'delivered']) {
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: status })).expect(200);
  }
  // Written an hour ago; the host failing all that time and just now.
  await sql`UPDATE relay_jobs SET next_attempt_at = now() - interval '1 hour'
    WHERE message_id = ${id}`.execute(t.database.db);
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    VALUES (${host}, now() - interval '1 hour', now(), 'connect ECONNREFUSED')`.execute(
    t.database.db,
  );
  const [first, second] = await jobsOf([id]);
  const expire = async () => (await walk(host, null, 100)).jobs;

  // Only the first: the second waits behind it.
  expect((await expire()).map((job) => job.id)).toEqual([first!.id]);
  // The first went dead a second ago: the second's schedule (600 ms) and the window (2 s) have
  // not passed since.
  await sql`UPDATE relay_jobs SET state = 'dead', lease_until = NULL,
    updated_at = now() - interval '1 second' WHERE id = ${first!.id}`.execute(t.database.db);
  expect(await expire()).toEqual([]);
  // Three seconds ago: they have. But its host has been failing for a second only (it
  // delivered before): not all through what would have been the rest of its schedule.
  await sql`UPDATE relay_jobs SET updated_at = now() - interval '3 seconds'
    WHERE id = ${first!.id}`.execute(t.database.db);
  await sql`UPDATE relay_hosts SET failing_since = now() - interval '1 second'`.execute(
    t.database.db,
  );
  expect(await expire()).toEqual([]);
  // Failing for three seconds: it has.
  await sql`UPDATE relay_hosts SET failing_since = now() - interval '3 seconds'`.execute(
    t.database.db,
  );
  const expired = await expire();
  expect(expired.map((job) => job.id)).toEqual([second!.id]);
  expect(expired[0]!.host_last_error).toBe('connect ECONNREFUSED');
  // Claimed with a lease, as a due job is: a second look does not take it again.
  expect(await expire()).toEqual([]);
});

test('When a host’s first jobs in due order are not expiring yet, then expiry walks on to older overdue ones behind them, whatever their due times', async () => {
  const url = await downUrl();
  const host = new URL(url).origin;
  // 4 messages with two relays each, whose first relays went dead a second ago: their second
  // relays were written two hours ago (due then), but their schedule started a second ago.
  const waiting: string[] = [];
  for (let i = 0; i < 4; i++) {
    const id = await seedProxiedMessage(t.database.db, 'cxml', url);
    for (const status of ['sent', 'delivered']) {
      await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: status })).expect(
        200,
      );
    }
    waiting.push(id);
  }
  await sql`UPDATE relay_jobs SET next_attempt_at = now() - interval '2 hours'
    WHERE message_id = ANY(${waiting})`.execute(t.database.db);
  await sql`UPDATE relay_jobs j SET state = 'dead', updated_at = now() - interval '1 second'
    WHERE message_id = ANY(${waiting})
      AND id = (SELECT min(id) FROM relay_jobs WHERE message_id = j.message_id)`.execute(
    t.database.db,
  );
  // 10 messages never tried, due an hour ago, written in one statement (one due time for all,
  // to the microsecond): long past their schedule.
  const overdue = await relaysTo(url, 10);
  await sql`UPDATE relay_jobs SET next_attempt_at = now() - interval '1 hour'
    WHERE message_id = ANY(${overdue})`.execute(t.database.db);
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    VALUES (${host}, now() - interval '3 hours', now(), 'HTTP 503')`.execute(t.database.db);

  // Looks of 4 jobs: the first finds only the waiting second relays, then the walk goes on.
  const expired: string[] = [];
  let after: ExpiryCursor | null = null;
  const looks: number[] = [];
  do {
    const look = await walk(host, after, 4);
    looks.push(look.jobs.length);
    expired.push(...look.jobs.map((job) => job.message_id));
    after = look.next;
  } while (after && looks.length < 10);
  expect(looks).toEqual([0, 4, 4, 2]);
  expect(expired.sort()).toEqual([...overdue].sort());
  // The walk ended: the next starts from the beginning.
  expect(after).toBeNull();
});

test('When the host delivers and then fails anew between expiry’s look and its claim, then nothing is claimed on the old evidence', async () => {
  const url = await downUrl();
  const host = new URL(url).origin;
  const ids = await relaysTo(url, 3);
  await sql`UPDATE relay_jobs SET next_attempt_at = now() - interval '1 hour'
    WHERE message_id = ANY(${ids})`.execute(t.database.db);
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    VALUES (${host}, now() - interval '1 hour', now(), 'HTTP 503')`.execute(t.database.db);
  // Right after the look: another replica delivers to the host (its row goes), and another's
  // request fails (a new row, failing since now).
  let between = false;
  const gap: KyselyPlugin = {
    transformQuery: ({ node }) => node,
    async transformResult({ result }) {
      const first = result.rows[0];
      if (!between && first && 'expired' in first) {
        between = true;
        await sql`DELETE FROM relay_hosts WHERE host = ${host}`.execute(t.database.db);
        await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
          VALUES (${host}, now(), now(), 'HTTP 503')`.execute(t.database.db);
      }
      return result;
    },
  };

  const look = await claimExpiredJobs(t.database.db.withPlugin(gap), {
    host,
    after: null,
    limit: 100,
    windowMs: WINDOW_MS,
    remainingMs: [600, 400, 0],
    leaseMs: 60_000,
  });
  expect(between).toBe(true);
  expect(look.looked).toBe(3);
  expect(look.jobs).toEqual([]);
});

test('When many hosts are failing with a few overdue relays each, then one expiry run gets through them all', async () => {
  const hosts: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const url = await downUrl();
    hosts.push(new URL(url).origin);
    ids.push(...(await relaysTo(url, 1)));
  }
  await sql`UPDATE relay_jobs SET next_attempt_at = now() - interval '1 hour'
    WHERE message_id = ANY(${ids})`.execute(t.database.db);
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    SELECT host, now() - interval '1 hour', now(), 'HTTP 503' FROM unnest(${hosts}::text[]) host`.execute(
    t.database.db,
  );
  // One expiry run in the test's time: the first turn's.
  startWorker({ expireEveryMs: 60_000 });

  const rows = await eventually(async () => {
    const all = await jobsOf(ids);
    return all.every((row) => row.state === 'dead') && all;
  });
  // All expired in that run, none sent (a host it did not get to would have had its relay
  // claimed and tried).
  expect(rows.map((row) => row.attempts)).toEqual([0, 0, 0, 0, 0, 0]);
});

test('When a slow app fails some relays but keeps delivering others, then its backlog is delivered however long it waits, never expired', async () => {
  const app = await t.customerApp();
  const ids = await relaysTo(app.callbackUrl('/slow'), 60);
  // Every fourth message's relay is always refused (503: it uses up its own schedule); the
  // others are accepted. Each answer takes 500 ms: 4 at a time, the backlog takes about 8 s,
  // far past every relay's schedule and the window. The host fails often, but never all
  // through a relay's schedule.
  ids.forEach((id, i) => app.behave(id, () => ({ status: i % 4 === 0 ? 503 : 200, delayMs: 500 })));
  // The breaker as configured by default (5 failures in a row): the failures here are spread.
  // Room for 8 relays: the backlog waits in the outbox, where expiry could take it, not
  // claimed (leased) in the worker's memory.
  startWorker({ failureThreshold: 5, concurrency: 8 });

  const rows = await eventually(async () => {
    const all = await jobsOf(ids);
    // In the order of ids (jobsOf orders by job id; one job per message).
    return all.every((row) => row.state !== 'pending') && all;
  }, 50_000);
  // Every accepted relay was delivered, although most waited past their schedule and the
  // window; the refused ones are dead (by their own schedule, or expired once only they were
  // left and the host failed everything).
  expect(rows.filter((row, i) => i % 4 === 0 && row.state !== 'dead')).toEqual([]);
  expect(rows.filter((row) => row.state === 'delivered')).toHaveLength(45);
});

test('When one replica cannot reach an app that another replica delivers to, then none of its relays expire', async () => {
  const app = await t.customerApp();
  const ids = await relaysTo(`http://app.expiry.test:${app.port}/status`, 60);
  // 4 at a time and 300 ms each, the backlog takes about 5 s: past every relay's schedule and
  // the window.
  for (const id of ids) app.behave(id, () => ({ status: 200, delayMs: 300 }));
  // Replica A's lookups lead to an address nothing listens on: it sees the host down, its
  // circuit opens, and it records the host failing. Replica B's lead to the app, which it
  // delivers to all along. Room for 8 relays each: the backlog waits in the outbox, where
  // expiry could take it.
  startWorker({ concurrency: 8, lookup: lookupTo('127.0.0.2') });
  startWorker({ concurrency: 8, lookup: lookupTo('127.0.0.1') });

  const rows = await eventually(async () => {
    const all = await jobsOf(ids);
    return all.every((row) => row.state !== 'pending') && all;
  }, 50_000);
  // A's failures may use up a relay's schedule (3 refused requests); none expired.
  expect(rows.filter((row) => row.state === 'dead' && row.attempts < 3)).toEqual([]);
  expect(rows.filter((row) => row.state === 'delivered').length).toBeGreaterThan(50);
});

test('When a host failed long ago but has not been tried since (the relay was stopped), then its overdue relays are not expired before it fails again', async () => {
  const url = await downUrl();
  const ids = await relaysTo(url, 3);
  const host = new URL(url).origin;
  // Long overdue, and its host seen failing an hour ago: old news (the service was down).
  await sql`UPDATE relay_jobs SET next_attempt_at = now() - interval '2 hours'
    WHERE message_id = ANY(${ids})`.execute(t.database.db);
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    VALUES (${host}, now() - interval '3 hours', now() - interval '1 hour', 'HTTP 503')`.execute(
    t.database.db,
  );
  const {
    rows: [started],
  } = await sql<{ now: string }>`SELECT now()::text AS now`.execute(t.database.db);
  startWorker();

  // Tried again first: the host fails now, and counts as failing only a window later.
  await eventually(async () => {
    const rows = await jobsOf(ids);
    return rows.some((row) => row.attempts > 0);
  });
  const early = await jobsOf(ids);
  expect(early.filter((row) => row.state === 'dead' && row.attempts === 0)).toEqual([]);
  // The worker notes the failure after it has written the attempt (and expiry may have
  // forgotten the hour-old row meanwhile): the row to look at is the one noted since.
  const fresh = await eventually(async () => {
    const { rows } = await sql<{ fresh: boolean }>`
      SELECT failing_since >= ${started!.now}::timestamptz AS fresh FROM relay_hosts
      WHERE host = ${host} AND last_failure_at >= ${started!.now}::timestamptz`.execute(
      t.database.db,
    );
    return rows[0];
  });
  // Failing since this failure (or one just before it), not since three hours ago.
  expect(fresh.fresh).toBe(true);
});

test('When a host is first noted failing while expiry reads the failing hosts, then a delivery to it right after still removes its row', async () => {
  const host = 'http://noted-during-look.example';
  // Another host's row, so that the look's read has a row to hold it by.
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    VALUES ('http://other.example', now(), now(), 'HTTP 503')`.execute(t.database.db);
  let reading!: () => void;
  const readStarted = new Promise<void>((resolve) => (reading = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held = false;
  const hold: KyselyPlugin = {
    transformQuery: ({ node }) => node,
    async transformResult({ result }) {
      const first = result.rows[0];
      if (!held && first && 'expiring' in first) {
        held = true;
        reading();
        await released;
      }
      return result;
    },
  };
  const expiry = createRelayExpiry({
    db: t.database.db.withPlugin(hold),
    logger: t.deps.logger,
    windowMs: WINDOW_MS,
    remainingMs: [0],
    leaseMs: 60_000,
  });

  // The look has read the table (without the host), and the host's first failure is noted
  // before the look takes in what it read.
  const look = expiry.claimExpired();
  await readStarted;
  await expiry.note([{ host, delivered: false, hostFailure: true, error: 'HTTP 503' }]);
  release();
  await look;
  await expiry.note([{ host, delivered: true, hostFailure: false, error: null }]);

  const { rows } = await sql`SELECT host FROM relay_hosts WHERE host = ${host}`.execute(
    t.database.db,
  );
  expect(rows).toEqual([]);
});
