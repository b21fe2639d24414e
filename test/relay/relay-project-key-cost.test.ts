import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import { PROJECT_KEY_WINDOW } from '../../src/messages/project-signing-key';
import { claimDueJobs } from '../../src/relay/relay.repository';
import { statusEvent, TEST_PROJECTS } from '../factories';
import { explainFirst } from '../helpers/explain';
import type { PlanNode } from '../helpers/explain';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * project-signing-key.ts: at most PROJECT_KEY_WINDOW relay jobs are read for a project's key,
 * however large the outbox. Counted as the last jobs WITH a key reference (no index leads to
 * them), the walk read every job of an outbox of token-admitted, unsigned relays (SignalWire's
 * native callbacks) on every claim that asked for a project's key (several keys listed alone),
 * inside the claim's statement, its row locks held. Found by review.
 */

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database.destroy());

/** relay_jobs rows (table or index) a plan node and its children read. */
function relayJobRowsRead(node: PlanNode): number {
  const own =
    node['Relation Name'] === 'relay_jobs' || node['Index Name']?.startsWith('relay_jobs')
      ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) *
        (node['Actual Loops'] ?? 1)
      : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + relayJobRowsRead(child), 0);
}

test('When the outbox holds many unsigned (token-admitted) relay jobs, then a claim with project keys reads at most about PROJECT_KEY_WINDOW of them', async () => {
  const id = randomUUID();
  await recordEvents(database.db, [
    statusEvent('queued', {
      messageId: id,
      api: 'native',
      projectId: TEST_PROJECTS.native,
      source: 'proxy',
      send: { ref: null, kind: 'sms', clientStatusCallback: 'https://app.example/s', body: null },
    }),
  ]);
  // 150 000 delivered relays of token-admitted, unsigned callbacks (kept for the retention).
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload, state, next_attempt_at,
      delivered_at)
    SELECT ${id}, 'https://app.example/s', 'https://app.example:443', 'POST', NULL,
      'delivered', now() - interval '1 hour', now() - interval '1 hour'
    FROM generate_series(1, 150000)`.execute(database.db);
  // One due, unsigned: the claim asks for its project's key.
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload, next_attempt_at)
    VALUES (${id}, 'https://app.example/s', 'https://app.example:443', 'POST', '\\x00'::bytea,
      now() - interval '1 second')`.execute(database.db);
  await sql`ANALYZE relay_jobs`.execute(database.db);

  let claimed = 0;
  const plan = await explainFirst(database.url, async (db) => {
    claimed = (
      await claimDueJobs(db, { limit: 10, perHost: 10, caps: new Map() }, 30_000, {
        knownKeyRefs: ['a-key-ref', 'another-key-ref'],
      })
    ).length;
  });
  expect(claimed).toBe(0); // explainFirst answers no rows; the statement ran under EXPLAIN ANALYZE
  const read = relayJobRowsRead(plan);
  expect(read).toBeLessThanOrEqual(2 * PROJECT_KEY_WINDOW);
});
