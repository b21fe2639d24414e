import { randomBytes, randomUUID } from 'node:crypto';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { WRITES } from '../../src/db/database-readiness';
import { READ_TABLES } from '../../src/db/standby-only';
import { recordEvents } from '../../src/messages/record-events';
import {
  forgetSendIntent,
  rememberSendIntent,
  sendIntentsFor,
} from '../../src/messages/send-intents';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A DATABASE_URL user granted table by table, exactly as the README lists it: SELECT on the
 * tables the reads use (READ_TABLES), the privileges readiness asks for (WRITES: a pod without
 * them stays unready), and what retention's removal needs. Such a pod is ready, so every write
 * it makes must work with them:
 * - the send proxy's intents: with only INSERT and DELETE on send_intents, REMEMBER's expiry
 *   clean-up (`FOR UPDATE SKIP LOCKED`, which needs UPDATE) failed 42501 on every send, each
 *   going out without its intent;
 * - a retention step that leaves a send intent: `ON CONFLICT (ref)` needs SELECT on the
 *   column, and failed every step (nothing ever removed), whether or not an intent was written.
 */

const DAY = 86_400_000;
let primary: TestDatabase;
let user: DatabaseHandle;
const role = `sw_status_least_${randomBytes(4).toString('hex')}`;
const password = `pw-${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  primary = await createTestDatabase(4);
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  const grants = [
    `GRANT SELECT ON ${READ_TABLES.join(', ')} TO ${role}`,
    ...WRITES.map(([table, privilege]) => `GRANT ${privilege} ON ${table} TO ${role}`),
    // Retention's removal (README "Retention").
    `GRANT DELETE ON messages, status_events, relay_jobs TO ${role}`,
    `GRANT UPDATE ON sw_status_retention TO ${role}`,
    `GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
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

test('When the proxy writes, reads and forgets a send intent as this user, then each works', async () => {
  const intent = { ref: 'r1', clientStatusCallback: 'https://app.example.com/cb', ttlDays: 30 };
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
    statusEvent('queued', {
      messageId: id,
      source: 'proxy',
      receivedAt: sentAt,
      send: {
        ref: 'r2',
        kind: 'sms',
        clientStatusCallback: 'https://app.example.com/cb',
        body: null,
      },
    }),
    statusEvent('sent', { messageId: id, receivedAt: sentAt }),
  ]);

  const step = await removeExpiredMessages(user.db, new Date(Date.now() - DAY), 10, 30);

  expect(step.messages).toBe(2);
  expect(await sendIntentsFor(primary.db, ['r2'])).toEqual(
    new Map([['r2', 'https://app.example.com/cb']]),
  );
});
