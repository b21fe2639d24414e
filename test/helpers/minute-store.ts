import { sql } from 'kysely';
import type { Db } from '../../src/db/database';

export const MINUTE = 60_000;
export const DAY = 86_400_000;

/**
 * A store shaped as real ones are, for tests of what a list reads: `messages` messages, one a
 * minute from `base` (ids m0000001…), all delivered within seconds — except one in a thousand
 * with activity 100 days after it was first seen (a late receipt, a reconciliation lookup, a
 * reply). The first `native` messages are native, the rest compatibility (cXML): a deployment
 * uses one API almost entirely. Analyzed, so plans are the ones a real store gets.
 */
export async function insertMinuteStore(
  db: Db,
  { messages, base, native = 0 }: { messages: number; base: number; native?: number },
): Promise<void> {
  await sql`
    INSERT INTO messages (id, api, "from", "to", status, raw_status, status_rank, status_received_at,
                          created_at, last_event_at, updated_at, stuck, conflict, sent_via_proxy)
    SELECT 'm' || lpad(i::text, 7, '0'), CASE WHEN i <= ${native} THEN 'native' ELSE 'cxml' END,
           '+1555000' || lpad((i % 1000)::text, 4, '0'), '+1666000' || lpad((i % 1000)::text, 4, '0'),
           'delivered', 'delivered', 50,
           to_timestamp((${base}::bigint + i * ${MINUTE}::bigint) / 1000.0),
           to_timestamp((${base}::bigint + i * ${MINUTE}::bigint) / 1000.0),
           to_timestamp((${base}::bigint + i * ${MINUTE}::bigint
             + CASE WHEN i % 1000 = 1 THEN ${100 * DAY}::bigint ELSE 5000 END) / 1000.0),
           to_timestamp((${base}::bigint + i * ${MINUTE}::bigint) / 1000.0),
           false, false, true
    FROM generate_series(1, ${messages}) AS i`.execute(db);
  await sql`VACUUM ANALYZE messages`.execute(db);
}
