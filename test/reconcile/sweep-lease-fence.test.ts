import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import { claimDueMessages, postpone, recordStep } from '../../src/reconcile/reconcile.repository';
import type { ClaimedMessage } from '../../src/reconcile/reconcile.repository';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Replicas share the sweep without looking one message up twice at once (DESIGN §11). A replica
 * whose lease ran out while it looked a message up (paused, or a lookup slower than the lease)
 * wrote what came of it all the same: it cleared, or moved, the lease another replica had taken
 * since, and a third could then look the message up while the second still was. Its writes now
 * apply only under the lease it claimed under, as the relay's do.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(() => database?.destroy());

const PROJECT = 'p-fence';
const claim = (leaseMs: number) =>
  claimDueMessages(database.db, { limit: 10, leaseMs, schedule: [0, 0, 0], projects: [PROJECT] });
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function dueMessage(): Promise<string> {
  const id = randomUUID();
  await recordEvents(database.db, [
    statusEvent('sent', {
      messageId: id,
      projectId: PROJECT,
      receivedAt: new Date(Date.now() - 60_000),
    }),
  ]);
  return id;
}

async function sweepState(id: string) {
  const { rows } = await sql<{ step: number; leased: boolean }>`
    SELECT sweep_step AS step, sweep_lease_until > now() AS leased FROM messages WHERE id = ${id}`.execute(
    database.db,
  );
  return rows[0];
}

const only = (claimed: ClaimedMessage[], id: string): ClaimedMessage => {
  const message = claimed.find((m) => m.id === id);
  expect(message).toBeDefined();
  return message!;
};

test.each([
  ['records its step', (late: ClaimedMessage) => recordStep(database.db, late, 1, false, null)],
  ['postpones its lookup', (late: ClaimedMessage) => postpone(database.db, late, 10, 'timeout')],
])(
  'When a replica whose lease ran out %s, then the lease another replica took meanwhile stands and no third replica can claim the message',
  async (_what, write) => {
    const id = await dueMessage();
    const late = only(await claim(100), id);
    await pause(250);
    const current = only(await claim(60_000), id);
    expect(current.lease.getTime()).toBeGreaterThan(late.lease.getTime());

    await write(late);

    expect(await sweepState(id)).toEqual({ step: 0, leased: true });
    expect((await claim(60_000)).map((m) => m.id)).not.toContain(id);
    // The lease's holder writes as before.
    await recordStep(database.db, current, 1, false, null);
    expect(await sweepState(id)).toEqual({ step: 1, leased: null });
  },
);

test('When the message’s last event has microseconds (written by another tool), then a lookup still moves it to its next step', async () => {
  const id = await dueMessage();
  await sql`UPDATE messages SET last_event_at = last_event_at + interval '123 microseconds'
    WHERE id = ${id}`.execute(database.db);
  const message = only(await claim(60_000), id);
  await recordStep(database.db, message, 1, false, null);
  expect(await sweepState(id)).toEqual({ step: 1, leased: null });
});
