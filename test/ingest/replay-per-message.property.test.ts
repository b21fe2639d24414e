import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { Client } from 'pg';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { failTransientlyWhileListed } from './support/transient-failure';

/**
 * Randomized scenarios against the spool's replay, per message (src/ingest/replay.ts,
 * spool.ts, and the recorder driving it): a spool an earlier process left (segments and chunks
 * of random sizes, a callback sent twice), row locks on messages held by another session, taken
 * and released at random moments, events PostgreSQL refuses for good (dead letters), events
 * whose own transaction fails transiently for a while (a statement timeout), the service's
 * connections terminated, recorder restarts on the same directory, and a stream of callbacks
 * arriving meanwhile in concurrent batches (maxInFlight). Once everything has settled, whatever
 * the timing:
 * - every acknowledged event is stored exactly once, or dead-lettered exactly once (a callback
 *   answered with an error is neither required nor dead-lettered: SignalWire sends it again);
 * - each message's stored events, in `seq` order, are in the order they were acknowledged;
 * - no segment file is left, and nothing failed unexpectedly (no error log but the expected
 *   ones, no unhandled rejection).
 * Each scenario has its own messages and spool directory; the database is the file's. The
 * default run is short; REPLAY_FUZZ_RUNS=200 explores (about 1.3 s a scenario).
 */

// As in production, relatively: a live commit gives up before a lock wait does (the batch is
// spooled), and a lock wait ends well before the replay's timeout.
const COMMIT_TIMEOUT_MS = 150;
const LOCK_TIMEOUT_MS = 250;
const REPLAY_TIMEOUT_MS = 3_000;
// The service's sessions, as another session tells them apart (a scenario's kills).
const SERVICE_APPLICATION = 'sw-status-replay-fuzz';
const RUNS = Number(process.env.REPLAY_FUZZ_RUNS ?? 15);
// A scenario settles within a few seconds; up to 30 s of waiting for it is a failure of its own.
jest.setTimeout(60_000 + RUNS * 5_000);

let database: TestDatabase;
let service: DatabaseHandle;

beforeAll(async () => {
  database = await createTestDatabase(2);
  const url = new URL(database.url);
  url.searchParams.set('application_name', SERVICE_APPLICATION);
  service = createDb(url.toString(), 8, { lockTimeoutMs: LOCK_TIMEOUT_MS });
  // Refused for good (23514, a dead letter): an event tagged `poison…`.
  await database.pool.query(
    `ALTER TABLE status_events ADD CONSTRAINT test_poison CHECK (error_code NOT LIKE 'poison%')`,
  );
  // Failing transiently while its tag is in test_flaky.
  await failTransientlyWhileListed(database, 'test_flaky');
});

afterAll(async () => {
  await service?.db.destroy();
  await database?.destroy();
});

type Kind = 'ok' | 'poison' | 'flaky' | 'dup';

interface Scenario {
  messages: number;
  segmentMaxEvents: number;
  replayChunk: number;
  maxInFlight: number;
  /** Left in the spool by an earlier process, in this order (`dup`: a copy of its message's last). */
  spooled: Array<{ message: number; kind: Kind }>;
  /**
   * A session holding a message's row locked: from the start (`fromMs` undefined) or taken at
   * `fromMs`, for `holdMs`. One per message.
   */
  locks: Array<{ message: number; fromMs?: number; holdMs: number }>;
  /** When the flaky events stop failing. */
  flakyFixedAfterMs: number;
  /** Callbacks arriving meanwhile (not waited for: they may share batches). */
  live: Array<{ message: number; afterMs: number; kind: Exclude<Kind, 'dup'> }>;
  /** The service's connections terminated (a database restart, as the sessions see it). */
  kills: number[];
  /** The recorder stopped (drain, deadline now) and a new one started on the directory. */
  restarts: number[];
}

const delay = fc.integer({ min: 0, max: 1_200 });

const scenarios: fc.Arbitrary<Scenario> = fc.record({
  // Few messages: each has several events, spread over chunks and segments.
  messages: fc.integer({ min: 1, max: 3 }),
  segmentMaxEvents: fc.integer({ min: 1, max: 4 }),
  replayChunk: fc.integer({ min: 1, max: 4 }),
  maxInFlight: fc.integer({ min: 1, max: 3 }),
  spooled: fc.array(
    fc.record({
      message: fc.nat(3),
      kind: fc.constantFrom<Kind>('ok', 'ok', 'ok', 'poison', 'flaky', 'dup'),
    }),
    { minLength: 1, maxLength: 14 },
  ),
  // Mostly from the start (the spool's events meet them), held for up to a few passes.
  locks: fc.array(
    fc.record({
      message: fc.nat(3),
      fromMs: fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 3 },
        { arbitrary: delay, weight: 2 },
      ),
      holdMs: delay,
    }),
    { maxLength: 3 },
  ),
  flakyFixedAfterMs: fc.integer({ min: 100, max: 1_200 }),
  // A stream of callbacks at a steady pace: with a locked message, a batch gives up (its commit
  // timeout) while later ones of the same message still wait and new ones keep arriving.
  live: fc
    .record({
      fromMs: delay,
      gapMs: fc.integer({ min: 0, max: 150 }),
      events: fc.array(
        fc.record({
          message: fc.nat(3),
          kind: fc.constantFrom<Exclude<Kind, 'dup'>>('ok', 'ok', 'ok', 'ok', 'poison', 'flaky'),
        }),
        { maxLength: 8 },
      ),
    })
    .map(({ fromMs, gapMs, events }) =>
      events.map((event, index) => ({ ...event, afterMs: fromMs + index * gapMs })),
    ),
  kills: fc.array(delay, { maxLength: 1 }),
  restarts: fc.array(delay, { maxLength: 2 }),
});

interface Run {
  ids: string[];
  /** Per message, the error_code tags expected in its history, in order. */
  expected: Map<string, Array<string | null>>;
  /** Live callbacks answered with an error (not in `expected`: stored or not). */
  refusedTags: string[];
  errors: string[];
}

// Error logs a scenario causes on purpose: a live commit outlasting its timeout (a locked
// message) or losing its connection spools, a replay losing its connection stops until the
// next probe, a live callback PostgreSQL refuses is answered with an error, and a poisoned
// spooled event is dead-lettered.
const EXPECTED_ERRORS = [
  /: spooling accepted callbacks to disk$/,
  /^spool replay stopped: .*; retrying after the next probe$/,
  /^event refused by the database$/,
  /^replayed event cannot be stored: dead-lettered$/,
];

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function runScenario(scenario: Scenario): Promise<Run> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-replay-fuzz-'));
  const errors: string[] = [];
  // Error logs other than the expected ones: each is a finding.
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        const record = JSON.parse(line) as { level: number; msg: string };
        if (record.level >= 50 && !EXPECTED_ERRORS.some((expected) => expected.test(record.msg)))
          errors.push(record.msg);
      }
      done();
    },
  });
  const logger = createLogger('warn', sink);
  const openRecorder = async (): Promise<GroupCommitRecorder> => {
    const started = createGroupCommitRecorder({
      db: service.db,
      logger,
      spool: await openSpool({ dir, logger, segmentMaxEvents: scenario.segmentMaxEvents }),
      replayChunk: scenario.replayChunk,
      batchMax: 50,
      batchWaitMs: 5,
      queueMax: 1_000,
      maxInFlight: scenario.maxInFlight,
      probeIntervalMs: 50,
      commitTimeoutMs: COMMIT_TIMEOUT_MS,
      replayTimeoutMs: REPLAY_TIMEOUT_MS,
      replayBackoffMs: { initial: 20, max: 100 },
    });
    started.start();
    return started;
  };

  const ids = Array.from({ length: scenario.messages }, () => randomUUID());
  const idOf = (message: number): string => ids[message % ids.length]!;
  let counter = 0;
  const tagged = (message: number, kind: Exclude<Kind, 'dup'>): StatusEvent =>
    statusEvent('sent', {
      messageId: idOf(message),
      errorCode: `${kind === 'ok' ? 't' : kind}${counter++}`,
    });
  // In the order they were acknowledged: what the history must show, the poisoned ones aside.
  const acknowledged: StatusEvent[] = [];
  const refused: StatusEvent[] = [];

  // Every message has a row (another session can lock it) and a first event.
  await recordEvents(
    service.db,
    ids.map((id) => statusEvent('queued', { messageId: id })),
  );
  // One append per event: segments close at segmentMaxEvents.
  const earlier = await openSpool({ dir, logger, segmentMaxEvents: scenario.segmentMaxEvents });
  for (const { message, kind } of scenario.spooled) {
    const last = [...acknowledged].reverse().find((event) => event.messageId === idOf(message));
    const event = kind === 'dup' ? (last ?? tagged(message, 'ok')) : tagged(message, kind);
    await earlier.append([event]);
    if (event !== last) acknowledged.push(event);
  }
  await earlier.close();
  const flaky = (event: StatusEvent): boolean => event.errorCode!.startsWith('flaky');
  const liveEvents = scenario.live.map((live) => tagged(live.message, live.kind));
  for (const event of [...acknowledged, ...liveEvents].filter(flaky))
    await database.pool.query('INSERT INTO test_flaky VALUES ($1)', [event.errorCode]);

  const holders: Client[] = [];
  const actions: Array<{ at: number; run: () => Promise<void> }> = [];
  const locked = new Set<string>();
  for (const lock of scenario.locks) {
    const id = idOf(lock.message);
    // A second session would wait for the first one's lock.
    if (locked.has(id)) continue;
    locked.add(id);
    const holder = new Client({ connectionString: database.url });
    holder.on('error', () => undefined);
    await holder.connect();
    holders.push(holder);
    const take = async (): Promise<void> => {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [id]);
    };
    if (lock.fromMs === undefined) await take();
    else actions.push({ at: lock.fromMs, run: take });
    actions.push({
      at: (lock.fromMs ?? 0) + lock.holdMs,
      run: async () => void (await holder.query('ROLLBACK')),
    });
  }
  actions.push({
    at: scenario.flakyFixedAfterMs,
    run: async () => void (await database.pool.query('DELETE FROM test_flaky')),
  });
  for (const at of scenario.kills) {
    actions.push({
      at,
      run: async () =>
        void (await database.pool.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = $1`,
          [SERVICE_APPLICATION],
        )),
    });
  }

  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  let recorder = await openRecorder();
  // The live callbacks in the order they arrived, and whether each was acknowledged.
  const answers: Array<{ event: StatusEvent; acknowledged: Promise<boolean> }> = [];
  try {
    scenario.live.forEach((live, index) => {
      actions.push({
        at: live.afterMs,
        run: async () => {
          const event = liveEvents[index]!;
          // Acknowledged or refused (an error answer: SignalWire would send it again).
          answers.push({
            event,
            acknowledged: recorder.record(event).then(
              (outcome) => {
                if (outcome !== 'recorded') errors.push(`live callback answered ${outcome}`);
                return true;
              },
              () => false,
            ),
          });
        },
      });
    });
    for (const at of scenario.restarts) {
      actions.push({
        at,
        run: async () => {
          await recorder.drain();
          recorder = await openRecorder();
        },
      });
    }
    // In time order (a stable sort: ties keep the order above); each waits for the one before.
    actions.sort((a, b) => a.at - b.at);
    const began = Date.now();
    for (const action of actions) {
      const wait = began + action.at - Date.now();
      if (wait > 0) await sleep(wait);
      await action.run();
    }
    for (const answer of answers)
      ((await answer.acknowledged) ? acknowledged : refused).push(answer.event);
    await eventually(
      () => recorder.mode() === 'direct' && recorder.status().spool.depth === 0,
      'the spool replayed',
      30_000,
    );
  } finally {
    await recorder.drain();
    process.off('unhandledRejection', onUnhandled);
    for (const holder of holders) await holder.end().catch(() => undefined);
    await database.pool.query('DELETE FROM test_flaky');
  }
  const left = (await readdir(dir)).filter((name) => name.startsWith('spool-'));
  if (left.length > 0) errors.push(`segments left: ${left.join(', ')}`);
  const deadLetters = await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8').catch(() => '');
  await rm(dir, { recursive: true, force: true });
  for (const reason of unhandled) errors.push(`unhandled rejection: ${String(reason)}`);

  const poisoned = (event: StatusEvent): boolean => event.errorCode!.startsWith('poison');
  const deadLettered = deadLetters
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => (JSON.parse(line) as { event: { errorCode: string } }).event.errorCode)
    .sort();
  const expectedDead = acknowledged.filter(poisoned).map((event) => event.errorCode!);
  if (JSON.stringify(deadLettered) !== JSON.stringify(expectedDead.sort()))
    errors.push(
      `dead letters ${JSON.stringify(deadLettered)}, expected ${JSON.stringify(expectedDead)}`,
    );
  const expected = new Map<string, Array<string | null>>(ids.map((id) => [id, [null]]));
  for (const event of acknowledged.filter((event) => !poisoned(event)))
    expected.get(event.messageId)!.push(event.errorCode);
  // A refused callback was not acknowledged: stored or not, SignalWire sends it again. Only
  // an acknowledged one must be there; a refused one must not be dead-lettered.
  for (const event of refused) {
    if (deadLettered.includes(event.errorCode!))
      errors.push(`refused ${event.errorCode} dead-lettered`);
  }
  return { ids, expected, errors, refusedTags: refused.map((event) => event.errorCode!) };
}

async function history(id: string): Promise<Array<string | null>> {
  const { rows } = await database.pool.query<{ error_code: string | null }>(
    'SELECT error_code FROM status_events WHERE message_id = $1 ORDER BY seq',
    [id],
  );
  return rows.map((row) => row.error_code);
}

test('When a spool is replayed under random row locks, dead letters, transient failures, restarts and new callbacks, then every acknowledged event is stored once (or dead-lettered once), in its message’s arrival order, and no segment is left', async () => {
  await fc.assert(
    fc.asyncProperty(scenarios, async (scenario) => {
      const run = await runScenario(scenario);
      expect(run.errors).toEqual([]);
      for (const id of run.ids) {
        const refused = new Set(run.refusedTags);
        const stored = (await history(id)).filter((tag) => tag === null || !refused.has(tag));
        expect(stored).toEqual(run.expected.get(id));
      }
    }),
    { numRuns: RUNS, endOnFailure: true },
  );
});
