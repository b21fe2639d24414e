import { randomBytes, randomUUID } from 'node:crypto';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { WRITES, createDatabaseReadiness, writesFor } from '../../src/db/database-readiness';
import { knownMigrations } from '../../src/db/migrate';
import { READ_TABLES } from '../../src/db/standby-only';
import { checkFeedEpoch } from '../../src/feed/feed-epoch';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { recordEvents } from '../../src/messages/record-events';
import { forgetMessageText } from '../../src/messages/redaction';
import {
  forgetSendIntent,
  rememberSendIntent,
  sendIntentsFor,
} from '../../src/messages/send-intents';
import type { StatusEvent } from '../../src/messages/status-event';
import {
  claimDueMessages,
  postpone,
  recordStep,
  release,
} from '../../src/reconcile/reconcile.repository';
import { forgetRelayedText } from '../../src/relay/relay-redaction';
import {
  claimDueJobs,
  claimExpiredJobs,
  forgetQuietHosts,
  forgetRecoveredHosts,
  noteFailingHosts,
  recordOutcomes,
  relayHosts,
} from '../../src/relay/relay.repository';
import {
  removeDeliveredRelayJobs,
  removeExpiredMessages,
} from '../../src/retention/retention.repository';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A DATABASE_URL user granted table by table, exactly as readiness asks and the README lists
 * ("Readiness and schema versions"): SELECT on the two tables readiness reads the schema from,
 * and the privileges readiness checks (writesFor: WRITES, and retention's deletes, which this
 * file runs too). Nothing else: no SELECT on the tables the reads use beyond those, no sequence.
 * Such a pod is ready, so everything a replica runs on DATABASE_URL's database must work with
 * them. Each was found failing 42501 on a ready pod:
 * - a callback (the upserts read `messages` for their conflict target: every callback failed,
 *   with either recorder), and the stats compactor (it deletes the deltas it folds, and its
 *   triggers write the narrow rollups);
 * - the send proxy's intents: with only INSERT and DELETE on send_intents, REMEMBER's expiry
 *   clean-up (`FOR UPDATE SKIP LOCKED`, which needs UPDATE) failed 42501 on every send, each
 *   going out without its intent;
 * - a retention step that leaves a send intent: `ON CONFLICT (ref)` needs SELECT on the
 *   column, and failed every step (nothing ever removed), whether or not an intent was written.
 */

const DAY = 86_400_000;
// This file runs retention's removals too: its deletes are asked of such a replica.
const SETTINGS = { retentionDays: 30, relayKeepDeliveredDays: 7 };
const APP_CALLBACK = 'https://app.example.com/cb';
const RELAY = {
  method: 'POST',
  contentType: 'application/json',
  body: 'e30=',
  keyRef: null,
} as const;
const logger = createLogger('silent');

let primary: TestDatabase;
let user: DatabaseHandle;
const role = `sw_status_least_${randomBytes(4).toString('hex')}`;
const password = `pw-${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  primary = await createTestDatabase(4);
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  const grants = [
    // Readiness reads the schema (src/db/schema-version.ts readSchema): a 42501 there keeps the
    // pod unready as "not reached".
    `GRANT SELECT ON kysely_migration, sw_status_schema TO ${role}`,
    ...writesFor(SETTINGS).map(([table, privilege]) => `GRANT ${privilege} ON ${table} TO ${role}`),
  ];
  await primary.pool.query(grants.join(';\n'));
  const parsed = new URL(primary.url);
  parsed.username = role;
  parsed.password = password;
  user = createDb(parsed.toString(), 2);
}, 60_000);

afterAll(async () => {
  await user?.db.destroy();
  await primary?.pool.query(`DROP OWNED BY ${role}`);
  await primary?.destroy();
  await asAdmin(`DROP ROLE IF EXISTS ${role}`);
});

/** `work` done, or its error's SQLSTATE and message (a 42501 names the table). */
const outcome = <T>(work: Promise<T>): Promise<T | { failed: string }> =>
  work.catch((error: { code?: string; message: string }) => ({
    failed: `${error.code}: ${error.message}`,
  }));
const failures = (results: unknown[]) =>
  results.filter((result) => typeof result === 'object' && result !== null && 'failed' in result);

/** A message sent through the proxy with the app's own status callback (relays go there). */
function proxiedSend(
  id: string,
  ref: string,
  receivedAt = new Date(),
  clientStatusCallback = APP_CALLBACK,
): StatusEvent {
  return statusEvent('queued', {
    messageId: id,
    source: 'proxy',
    receivedAt,
    send: { ref, kind: 'sms', clientStatusCallback, body: null },
  });
}

const relayJobsOf = async (id: string) =>
  (await primary.pool.query('SELECT state FROM relay_jobs WHERE message_id = $1', [id])).rows;

test('When the role holds exactly what readiness asks for, then readiness says ready', async () => {
  const readiness = createDatabaseReadiness({
    db: user.db,
    logger,
    known: await knownMigrations(),
    writes: writesFor(SETTINGS),
  });
  expect(await readiness.check()).toMatchObject({ ready: true, database: 'ok' });
});

test('When readiness asks its privileges, then they cover every table the reads use (no reader: the primary serves them)', () => {
  const selected = WRITES.filter(([, privilege]) => privilege === 'SELECT').map(([t]) => t);
  expect(READ_TABLES.filter((table) => !selected.includes(table))).toEqual([]);
});

test.each([
  ['one transaction per event (directRecorder)', () => directRecorder(user.db)],
  [
    'the group commit',
    () =>
      createGroupCommitRecorder({
        db: user.db,
        logger,
        batchMax: 20,
        batchWaitMs: 1,
        queueMax: 100,
        maxInFlight: 2,
      }),
  ],
])(
  'When callbacks are recorded through %s as this user, then new and known messages, relays and send intents are written',
  async (_label, recorderFor) => {
    const recorder = recorderFor();
    const sent = randomUUID();
    const intended = randomUUID();
    const ref = `r-${randomUUID()}`;
    await rememberSendIntent(user.db, { ref, clientStatusCallback: APP_CALLBACK, ttlDays: 30 });

    const results = await Promise.all([
      // A new message; one sent through the proxy (its send intent dropped).
      outcome(recorder.record(statusEvent('delivered'))),
      outcome(recorder.record(proxiedSend(sent, `r-${randomUUID()}`))),
      // A callback authenticated by a send's token: the intent read, its relay enqueued.
      outcome(
        recorder.record(
          statusEvent('sent', { messageId: intended, tokenRef: ref, relay: { ...RELAY } }),
        ),
      ),
    ]);
    // A known message moving on (the fold saved), with a relay to the app.
    results.push(
      await outcome(recorder.record(statusEvent('delivered', { messageId: sent, relay: RELAY }))),
    );
    await recorder.drain();

    expect(failures(results)).toEqual([]);
    expect(await relayJobsOf(sent)).toEqual([{ state: 'pending' }]);
    expect(await relayJobsOf(intended)).toEqual([{ state: 'pending' }]);
  },
);

test('When the stats compactor folds the deltas as this user, then they are folded into the rollups', async () => {
  await recordEvents(user.db, [statusEvent('delivered')]);
  const folded = await outcome(foldDeltas(user.db));
  expect(folded).toEqual(expect.any(Number));
  expect(folded).toBeGreaterThan(0);
});

test('When a message is redacted as this user, then its text, its events’ and its relay copies’ are forgotten', async () => {
  const id = randomUUID();
  await recordEvents(primary.db, [proxiedSend(id, `r-${randomUUID()}`)]);
  expect(
    await outcome(
      (async () => {
        await forgetMessageText(user.db, id);
        await forgetRelayedText(user.db, id);
        return 'forgotten';
      })(),
    ),
  ).toBe('forgotten');
});

test('When the sweep claims, records, postpones and releases a message as this user, then each is written, and the lookup’s answer recorded', async () => {
  const project = `p-${randomUUID()}`;
  const id = randomUUID();
  await recordEvents(primary.db, [
    statusEvent('sent', {
      messageId: id,
      projectId: project,
      receivedAt: new Date(Date.now() - 60_000),
    }),
  ]);
  const claim = () =>
    claimDueMessages(user.db, {
      limit: 10,
      leaseMs: 60_000,
      schedule: [0, 0, 0],
      projects: [project],
    });

  const first = await outcome(claim());
  expect(first).toEqual([expect.objectContaining({ id })]);
  const message = (first as Awaited<ReturnType<typeof claim>>)[0]!;
  expect(await outcome(postpone(user.db, message, 0, 'timeout'))).toBeUndefined();
  const again = (await claim())[0]!;
  expect(await outcome(release(user.db, again))).toBeUndefined();
  const third = (await claim())[0]!;
  // The lookup's answer, recorded as an event, then its step.
  expect(
    await outcome(
      recordEvents(user.db, [
        statusEvent('delivered', { messageId: id, projectId: project, source: 'reconcile' }),
      ]),
    ),
  ).toEqual([expect.anything()]);
  expect(await outcome(recordStep(user.db, third, 1, false, null))).toBeUndefined();
});

test('When the relay claims a job, writes its outcome and notes its host as this user, then each is written, and the expiry looks', async () => {
  const id = randomUUID();
  const host = 'https://relays.example.com';
  await recordEvents(primary.db, [proxiedSend(id, `r-${randomUUID()}`, new Date(), `${host}/cb`)]);
  await recordEvents(primary.db, [statusEvent('sent', { messageId: id, relay: RELAY })]);
  // This host's jobs only (the recorders' tests left jobs for another).
  const limits = { limit: 10, perHost: 0, caps: new Map([[host, 4]]) };

  const claimed = await outcome(claimDueJobs(user.db, limits, 60_000));
  expect(claimed).toEqual([expect.objectContaining({ message_id: id })]);
  const job = (claimed as Awaited<ReturnType<typeof claimDueJobs>>)[0]!;
  const failed = {
    id: Number(job.id),
    lease: job.lease_until!,
    state: 'pending',
    attempted: true,
    delayMs: 0,
    status: 500,
    error: 'HTTP 500',
    payload: { keep: true },
  } as const;
  expect(await outcome(recordOutcomes(user.db, [failed]))).toEqual(new Set());
  expect(
    await outcome(noteFailingHosts(user.db, [{ host, error: 'HTTP 500' }], 60_000)),
  ).toBeUndefined();
  expect(await outcome(relayHosts(user.db, 60_000))).toEqual([{ host, expiring: false }]);
  expect(
    await outcome(
      claimExpiredJobs(user.db, {
        host,
        after: null,
        limit: 10,
        windowMs: 60_000,
        remainingMs: [0],
        leaseMs: 60_000,
      }),
    ),
  ).toMatchObject({ jobs: [] });

  const retried = (await claimDueJobs(user.db, limits, 60_000))[0]!;
  const delivered = {
    ...failed,
    lease: retried.lease_until!,
    state: 'delivered',
    status: 200,
    error: null,
    payload: { keep: false, base64: null },
  } as const;
  expect(await outcome(recordOutcomes(user.db, [delivered]))).toEqual(new Set());
  expect(await outcome(forgetRecoveredHosts(user.db, [host]))).toBeUndefined();
  expect(await outcome(forgetQuietHosts(user.db, 0))).toBeUndefined();
  expect(await relayJobsOf(id)).toEqual([{ state: 'delivered' }]);
  // RELAY_KEEP_DELIVERED_DAYS.
  expect(await outcome(removeDeliveredRelayJobs(user.db, new Date(Date.now() + DAY), 10))).toBe(1);
});

test('When the feed epoch check notes the epoch, and resets the feed after it changed, as this user, then both are written', async () => {
  await primary.pool.query('DELETE FROM sw_status_feed_epoch');
  expect(await outcome(checkFeedEpoch(user.db, logger))).toBe('noted');
  // What pg_upgrade or a restore from another cluster leaves: another system identifier.
  await primary.pool.query(`UPDATE sw_status_feed_epoch SET system_identifier = '1'`);
  expect(await outcome(checkFeedEpoch(user.db, logger))).toBe('reset');
  expect(await outcome(checkFeedEpoch(user.db, logger))).toBe('unchanged');
});

test('When the proxy writes, reads and forgets a send intent as this user, then each works', async () => {
  const intent = { ref: 'r1', clientStatusCallback: APP_CALLBACK, ttlDays: 30 };
  await rememberSendIntent(user.db, intent);
  expect(await sendIntentsFor(user.db, ['r1'])).toEqual(
    new Map([['r1', intent.clientStatusCallback]]),
  );
  await forgetSendIntent(user.db, 'r1');
  expect(await sendIntentsFor(primary.db, ['r1'])).toEqual(new Map());
});

test('When retention removes an expired message and a waiting proxied one as this user, then both go and the waiting one leaves its intent', async () => {
  const long = new Date(Date.now() - 40 * DAY);
  await recordEvents(primary.db, [statusEvent('delivered', { receivedAt: long })]);
  const id = randomUUID();
  const sentAt = new Date(Date.now() - 2 * DAY);
  await recordEvents(primary.db, [
    proxiedSend(id, 'r2', sentAt),
    statusEvent('sent', { messageId: id, receivedAt: sentAt }),
  ]);

  const step = await removeExpiredMessages(user.db, new Date(Date.now() - DAY), 10, 30);

  expect(step.messages).toBe(2);
  expect(await sendIntentsFor(primary.db, ['r2'])).toEqual(new Map([['r2', APP_CALLBACK]]));
});
