import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { startOnNonUtcDatabase } from '../helpers/non-utc-app';
import type { TestApp } from '../helpers/test-app';

// The write path must not depend on the database's TimeZone setting either: a self-hosted
// PostgreSQL often takes the host's zone. It reads an existing message back inside JSON, where
// PostgreSQL writes a timestamptz in that zone — for an early date in local mean time, with
// seconds in the offset and a BC suffix, which Date cannot read.

let app: Awaited<ReturnType<typeof startOnNonUtcDatabase>>;
let t: TestApp;
beforeAll(async () => {
  app = await startOnNonUtcDatabase();
  t = app.t;
});
afterAll(async () => {
  await app?.close();
});

test('When the database is not on UTC and a message with an early provider timestamp moves on, then its stored timestamps survive the fold and the later provider timestamp wins', async () => {
  const id = randomUUID();
  const zero = new Date('0001-01-01T00:00:00Z');
  const later = new Date('0001-01-01T00:00:05Z');
  const receivedAt = new Date('2026-11-20T10:00:00.123Z');
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: id, providerTimestamp: zero, receivedAt }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('failed', {
      messageId: id,
      providerTimestamp: later,
      receivedAt: new Date(receivedAt.getTime() + 1_000),
    }),
  ]);
  const { rows } = await sql<{
    status: string;
    conflict: boolean;
    status_provider_timestamp: string | null;
    created_at: string;
  }>`SELECT status, conflict, to_char(status_provider_timestamp AT TIME ZONE 'UTC',
         'YYYY-MM-DD"T"HH24:MI:SS') AS status_provider_timestamp,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS created_at
     FROM messages WHERE id = ${id}`.execute(t.database.db);
  expect(rows).toEqual([
    {
      status: 'failed',
      conflict: true,
      status_provider_timestamp: '0001-01-01T00:00:05',
      created_at: '2026-11-20T10:00:00.123',
    },
  ]);
});
