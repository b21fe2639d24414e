import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import { findMessageWithHistory } from '../../src/messages/messages.repository';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

jest.setTimeout(120_000);

/**
 * The write path sends a batch as one PostgreSQL array literal per column, written by
 * src/messages/record-events.repository.ts itself: a value that could end its element early,
 * read as NULL or shift into the next row would store one callback's text in another's message.
 * Whatever text a batch holds — quotes, backslashes, braces, commas, the word NULL, blanks,
 * any Unicode, lone surrogates — each message gets exactly its own event's values, through
 * both statements (a new message's, and the fold of an existing one).
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(() => database.destroy());

// PostgreSQL text cannot hold NUL (the public listener refuses it with a 400).
const withoutNul = (text: string) => !text.includes('\u0000');
const special = fc.constantFrom('"', '\\', '{', '}', ',', 'NULL', 'null', ' ', '', '\\"', '"}');
const text = fc
  .array(fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), special), {
    maxLength: 4,
  })
  .map((parts) => parts.join(''))
  .filter(withoutNul);
const optionalText = fc.option(text, { nil: null });
const fields = fc.record({
  from: text,
  to: text,
  errorCode: optionalText,
  errorMessage: optionalText,
  rawValue: text,
});
type Fields = typeof fields extends fc.Arbitrary<infer T> ? T : never;

/** What PostgreSQL stores for text node-postgres sends: a lone surrogate becomes U+FFFD. */
function stored(value: string): string {
  return Buffer.from(value, 'utf8').toString('utf8');
}

async function expectStored(id: string, given: Fields, rawStatus: string): Promise<void> {
  const found = await findMessageWithHistory(database.db, id);
  expect(found?.message).toMatchObject({
    from: stored(given.from),
    to: stored(given.to),
    error_code: given.errorCode === null ? null : stored(given.errorCode),
    error_message: given.errorMessage === null ? null : stored(given.errorMessage),
    raw_status: rawStatus,
  });
  const { rows } = await sql<{ raw: { value: string; id: string } }>`
    SELECT raw FROM status_events WHERE message_id = ${id} AND raw_status = ${rawStatus}`.execute(
    database.db,
  );
  expect(rows.map((row) => row.raw)).toEqual([{ value: stored(given.rawValue), id }]);
}

test('Whatever text a batch holds, each message stores its own values, created and folded', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fields, fields), { minLength: 1, maxLength: 8 }),
      async (messages) => {
        const ids = messages.map(() => randomUUID());
        const batch = (which: 0 | 1, rawStatus: string) =>
          messages.map((pair, i) => {
            const given = pair[which];
            return statusEvent(rawStatus, {
              messageId: ids[i]!,
              from: given.from,
              to: given.to,
              errorCode: given.errorCode,
              errorMessage: given.errorMessage,
              raw: { value: given.rawValue, id: ids[i]! },
            });
          });
        // Created from their first events (RECORD_BATCH alone)…
        await recordEvents(database.db, batch(0, 'sent'));
        for (const [i, id] of ids.entries()) await expectStored(id, messages[i]![0], 'sent');
        // …then moved by a second batch (SAVE_FOLD writes the whole message row).
        await recordEvents(database.db, batch(1, 'undelivered'));
        for (const [i, id] of ids.entries()) {
          const [first, second] = messages[i]!;
          await expectStored(
            id,
            // The higher rank wins; a known error code is not erased (DESIGN §3), nor is its
            // message by one that comes without a code.
            {
              ...second,
              errorCode: second.errorCode ?? first.errorCode,
              errorMessage:
                second.errorCode !== null ||
                (first.errorCode === null && second.errorMessage !== null)
                  ? second.errorMessage
                  : first.errorMessage,
            },
            'undelivered',
          );
        }
      },
    ),
    { numRuns: 60 },
  );
});
