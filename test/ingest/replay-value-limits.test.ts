import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import type { Spool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../ingest/support/eventually';

/**
 * An event in the spool whose `to` is too long for the btree index messages_to_idx (left by a
 * release that did not bound it at the edge) fails its replay with SQLSTATE 54000. Were that
 * retried as transient, the replay would never end, the recorder never return to `direct`, and
 * every later callback be acknowledged into the spool and never reach PostgreSQL: it must be
 * dead-lettered, and the spool drain.
 */
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

function event(overrides: Record<string, string> = {}): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(overrides), { receivedAt: new Date(), storeBody: false });
}

let dir: string;
let spool: Spool;
let recorder: GroupCommitRecorder;
let t: TestApp;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-replay-limits-'));
});
afterEach(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

test('When a spooled event is too long for an index, then it is dead-lettered and the spool drains (the service writes to PostgreSQL again)', async () => {
  // Random bytes do not compress: an index entry over btree's cap of about 2.7 kB.
  const poisoned = { ...event(), to: randomBytes(4500).toString('base64url') };
  const others = [event(), event(), event()];
  const previous = await openSpool({ dir, logger });
  await previous.append([others[0]!, poisoned, others[1]!, others[2]!]);
  await previous.close();

  spool = await openSpool({ dir, logger });
  t = await createTestApp(
    {},
    {
      recorder: (deps, database) => {
        recorder = createGroupCommitRecorder({
          db: database.db,
          logger: deps.logger,
          spool,
          batchMax: 50,
          batchWaitMs: 2,
          queueMax: 1000,
          maxInFlight: 2,
          probeIntervalMs: 50,
          replayChunk: 10,
          replayBackoffMs: { initial: 20, max: 200 },
        });
        return recorder;
      },
    },
  );
  recorder.start();

  // The good neighbours do make it in …
  await eventually(async () => {
    const rows = await t.database.db
      .selectFrom('status_events')
      .select('message_id')
      .where(
        'message_id',
        'in',
        others.map((e) => e.messageId),
      )
      .execute();
    return rows.length === others.length;
  }, 'the neighbours stored');

  // … but the replay must also finish: a live callback after it must reach PostgreSQL.
  let direct = true;
  try {
    await eventually(() => recorder.mode() === 'direct', 'the spool replayed', 8_000);
  } catch {
    direct = false;
  }
  const live = cxmlFields();
  const res = await postCxml(t.publicApp, live);
  expect(res.status).toBe(200); // acknowledged either way (into the spool when wedged)
  const stored = await t.database.db
    .selectFrom('status_events')
    .select('message_id')
    .where('message_id', '=', live.MessageSid!)
    .execute();
  expect({ direct, liveStored: stored.length, retrying: recorder.status().spool.retrying }).toEqual(
    {
      direct: true,
      liveStored: 1,
      retrying: undefined,
    },
  );
  expect(recorder.status().spool.dead_letters).toBe(1);
}, 30_000);
