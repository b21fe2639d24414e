import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { Client } from 'pg';
import { createDb } from '../src/db/database';
import { rebuildRollups } from '../src/stats/stats.repository';
import { from as copyFrom } from 'pg-copy-streams';
import { applyEvent } from '../src/messages/projection';
import type { MessageState } from '../src/messages/projection';
import { dedupeKey } from '../src/messages/status-event';
import type { StatusEvent } from '../src/messages/status-event';
import { rankOf } from '../src/messages/statuses';
import type { CanonicalStatus } from '../src/messages/statuses';

/**
 * Loads a realistic status history — N status events and the messages they belong to — with
 * COPY FROM STDIN, for measuring queries and ingest at scale (bench/scale.ts).
 *
 *   DATABASE_URL=postgres://… tsx scripts/generate-events.ts [events, default 10000000]
 *
 * Messages: 70 % compatibility API, 30 % native; 40 % sent through the proxy (a `queued`
 * event with source proxy); then `sent`, and a final status: delivered 85 %, undelivered 7 %
 * (with an error code), failed 3 %, none 5 % (MMS stops at sent); some native messages are
 * `read`. Spread over the last 30 days, 50 senders, 500 000 recipients. Rows are exactly what
 * the service writes: the dedupe key is computed by the service's own function, so a real
 * callback for a generated event is recognised as a duplicate.
 *
 * The tables must be empty. Secondary indexes and the dedupe constraint are dropped for the
 * load and rebuilt after it (sorted builds are much faster than 10 million random inserts),
 * exactly as they were defined; then the stats rollups are counted from the messages (the load
 * bypasses the write path that keeps them) and VACUUM ANALYZE. Deterministic: same N, same rows.
 */

const DAY_MS = 86_400_000;
/** Events per COPY transaction (a few seconds each). */
const COMMIT_EVERY = 50_000;
const CXML_ERRORS = ['30003', '30005', '30006', '30007', '30008'];
const NATIVE_ERRORS = ['unreachable_destination_handset', 'carrier_violation', 'message_filtered'];

export interface GenerateResult {
  messages: number;
  events: number;
  seconds: number;
}

export async function generateEvents(
  databaseUrl: string,
  events: number,
  log: (line: string) => void = () => undefined,
): Promise<GenerateResult> {
  const started = performance.now();
  const admin = new Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ n: string }>(
      'SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM status_events) AS n',
    );
    if (Number(rows[0]!.n) > 0) throw new Error('messages and status_events must be empty');
    const indexes = await secondaryIndexes(admin);
    for (const index of indexes) await admin.query(index.drop);
    log(`dropped ${indexes.length} secondary indexes for the load`);
    let result: { messages: number; events: number };
    try {
      result = await load(databaseUrl, events, log);
    } finally {
      await admin.query(`SET maintenance_work_mem = '1GB'`);
      for (const index of indexes) {
        const t = performance.now();
        await admin.query(index.create);
        log(`rebuilt ${index.name} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      }
    }
    const { db } = createDb(databaseUrl, 1);
    try {
      const rollups = await rebuildRollups(db, log);
      log(`stats rollups: ${rollups.keys} keys for ${rollups.messages} messages`);
    } finally {
      await db.destroy();
    }
    // The whole database: the rollups' tables depend on the schema version it was migrated to.
    await admin.query('VACUUM (ANALYZE)');
    log('vacuumed and analyzed');
    return { ...result, seconds: Math.round((performance.now() - started) / 1000) };
  } finally {
    await admin.end();
  }
}

interface SecondaryIndex {
  name: string;
  drop: string;
  create: string;
}

async function secondaryIndexes(client: Client): Promise<SecondaryIndex[]> {
  const { rows } = await client.query<{
    name: string;
    table: string;
    def: string;
    constraint: string | null;
    condef: string | null;
  }>(`
    SELECT i.indexrelid::regclass::text AS name, t.relname AS table,
           pg_get_indexdef(i.indexrelid) AS def, c.conname AS constraint,
           pg_get_constraintdef(c.oid) AS condef
      FROM pg_index i
      JOIN pg_class t ON t.oid = i.indrelid
      LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = t.oid
     WHERE t.relname IN ('messages', 'status_events') AND NOT i.indisprimary
     ORDER BY 1`);
  return rows.map((row) =>
    row.constraint
      ? {
          name: row.name,
          drop: `ALTER TABLE ${row.table} DROP CONSTRAINT ${row.constraint}`,
          create: `ALTER TABLE ${row.table} ADD CONSTRAINT ${row.constraint} ${row.condef}`,
        }
      : { name: row.name, drop: `DROP INDEX ${row.name}`, create: row.def },
  );
}

async function load(
  databaseUrl: string,
  total: number,
  log: (line: string) => void,
): Promise<{ messages: number; events: number }> {
  const eventsClient = new Client({ connectionString: databaseUrl });
  const messagesClient = new Client({ connectionString: databaseUrl });
  await Promise.all([eventsClient.connect(), messagesClient.connect()]);
  try {
    // Each COPY commits on its own after COMMIT_EVERY events: one transaction for the whole load
    // would hold a transaction id open for minutes, which holds back the change feed (and
    // vacuum) of every database on the cluster meanwhile (README "What pauses the feed").
    const startCopies = () => ({
      events: eventsClient.query(
        copyFrom(
          `COPY status_events (message_id, api, status, raw_status, error_code, error_message, source,
             provider_timestamp, received_at, dedupe_key, raw, message_status) FROM STDIN`,
        ),
      ),
      messages: messagesClient.query(
        copyFrom(
          `COPY messages (id, api, project_id, "from", "to", kind, body, status, raw_status, status_rank,
             status_provider_timestamp, status_received_at, error_code, error_message, conflict,
             num_segments, num_media, ref, sent_via_proxy, client_status_callback, created_at,
             updated_at, last_event_at, first_terminal_at) FROM STDIN`,
        ),
      ),
    });
    let copies = startCopies();
    const commitCopies = async (): Promise<void> => {
      copies.events.end();
      copies.messages.end();
      await Promise.all([once(copies.events, 'finish'), once(copies.messages, 'finish')]);
    };
    const random = mulberry32(0x5eed);
    const now = Date.now();
    let events = 0;
    let messages = 0;
    let eventsBuffer: string[] = [];
    let messagesBuffer: string[] = [];
    const flush = async (force: boolean): Promise<void> => {
      if (eventsBuffer.length >= 2000 || (force && eventsBuffer.length > 0)) {
        await write(copies.events, eventsBuffer.join(''));
        eventsBuffer = [];
      }
      if (messagesBuffer.length >= 2000 || (force && messagesBuffer.length > 0)) {
        await write(copies.messages, messagesBuffer.join(''));
        messagesBuffer = [];
      }
    };

    let nextReport = 1_000_000;
    let nextCommit = COMMIT_EVERY;
    while (events < total) {
      const message = generateMessage(random, now);
      // The message's status after each event, as the write path's fold stores it.
      let state: MessageState | null = null;
      for (const event of message.events.slice(0, total - events)) {
        state = applyEvent(state, event);
        eventsBuffer.push(eventRow(event, state.status));
        events++;
      }
      messagesBuffer.push(messageRow(message, state!));
      messages++;
      await flush(false);
      if (events >= nextCommit && events < total) {
        await flush(true);
        await commitCopies();
        copies = startCopies();
        nextCommit += COMMIT_EVERY;
      }
      if (events >= nextReport) {
        log(`${events.toLocaleString('en')} events, ${messages.toLocaleString('en')} messages`);
        nextReport += 1_000_000;
      }
    }
    await flush(true);
    await commitCopies();
    return { messages, events };
  } finally {
    await Promise.all([eventsClient.end(), messagesClient.end()]);
  }
}

async function write(stream: Writable, chunk: string): Promise<void> {
  if (!stream.write(chunk)) await once(stream, 'drain');
}

interface GeneratedMessage {
  id: string;
  api: 'cxml' | 'native';
  projectId: string;
  from: string;
  to: string;
  kind: 'sms' | 'mms';
  viaProxy: boolean;
  numSegments: number;
  numMedia: number;
  createdAt: Date;
  events: StatusEvent[];
}

function generateMessage(random: () => number, now: number): GeneratedMessage {
  const api = random() < 0.7 ? 'cxml' : 'native';
  const created = now - random() * 30 * DAY_MS;
  const fate = random();
  const kind = fate >= 0.95 ? 'mms' : 'sms';
  const message: GeneratedMessage = {
    id: uuid(random),
    api,
    projectId: '6f1c4d8e-2b7a-4c39-9d51-0e8f3a2b7c64',
    from: `+1555010${String(Math.floor(random() * 50)).padStart(4, '0')}`,
    to: `+1555${String(1_000_000 + Math.floor(random() * 500_000)).padStart(7, '0')}`,
    kind,
    viaProxy: random() < 0.4,
    numSegments: 1 + Math.floor(random() * random() * 4),
    numMedia: kind === 'mms' ? 1 : 0,
    createdAt: new Date(created),
    events: [],
  };
  const statuses: Array<[CanonicalStatus, number, string | null]> = [];
  if (message.viaProxy) statuses.push(['queued', 0, null]);
  statuses.push(['sent', 1_000 + random() * 2_000, null]);
  const finalAt = 5_000 + random() * 55_000;
  if (fate < 0.85) {
    statuses.push(['delivered', finalAt, null]);
    if (api === 'native' && random() < 0.3)
      statuses.push(['read', finalAt + random() * 3_600_000, null]);
  } else if (fate < 0.92) {
    const codes = api === 'cxml' ? CXML_ERRORS : NATIVE_ERRORS;
    statuses.push(['undelivered', finalAt, codes[Math.floor(random() * codes.length)]!]);
  } else if (fate < 0.95) {
    statuses.push(['failed', finalAt, api === 'cxml' ? '30008' : 'unknown_error']);
  }
  for (const [status, offset, errorCode] of statuses) {
    const at = new Date(created + offset);
    const providerTimestamp =
      api === 'native' ? new Date(Math.floor(at.getTime() / 1000) * 1000) : null;
    message.events.push({
      messageId: message.id,
      api,
      source: status === 'queued' ? 'proxy' : 'callback',
      projectId: message.projectId,
      status,
      rawStatus: status,
      errorCode,
      errorMessage: errorCode && api === 'native' ? 'The destination handset is unreachable' : null,
      from: message.from,
      to: message.to,
      numSegments: message.numSegments,
      numMedia: message.numMedia,
      providerTimestamp,
      receivedAt: new Date(at.getTime() + 150 + Math.floor(random() * 400)),
      raw:
        api === 'cxml'
          ? {
              MessageSid: message.id,
              MessageStatus: status,
              AccountSid: message.projectId,
              From: message.from,
              To: message.to,
              NumMedia: String(message.numMedia),
              NumSegments: String(message.numSegments),
              ...(errorCode && { ErrorCode: errorCode }),
            }
          : {
              id: message.id,
              project_id: message.projectId,
              status,
              to: message.to,
              from: message.from,
              number_of_segments: message.numSegments,
              timestamp: providerTimestamp!.toISOString().replace('.000', ''),
              error_code: errorCode,
              error_message: errorCode ? 'The destination handset is unreachable' : null,
            },
    });
  }
  return message;
}

function eventRow(event: StatusEvent, messageStatus: string): string {
  return `${[
    event.messageId,
    event.api,
    event.status,
    event.rawStatus,
    event.errorCode,
    event.errorMessage,
    event.source,
    event.providerTimestamp?.toISOString() ?? null,
    event.receivedAt.toISOString(),
    `\\x${dedupeKey(event).toString('hex')}`, // bytea in hex; copyField escapes the backslash
    JSON.stringify(event.raw),
    messageStatus,
  ]
    .map(copyField)
    .join('\t')}\n`;
}

/** The final state, as the projection would leave it: the highest-ranked event wins. */
function messageRow(message: GeneratedMessage, state: MessageState): string {
  const winner = message.events.reduce((best, event) =>
    rankOf(event.status) >= rankOf(best.status) ? event : best,
  );
  const withError = [...message.events].reverse().find((event) => event.errorCode !== null);
  const last = message.events.at(-1)!;
  return `${[
    message.id,
    message.api,
    message.projectId,
    message.from,
    message.to,
    message.kind,
    null,
    winner.status,
    winner.rawStatus,
    String(rankOf(winner.status)),
    winner.providerTimestamp?.toISOString() ?? null,
    winner.receivedAt.toISOString(),
    withError?.errorCode ?? null,
    withError?.errorMessage ?? null,
    'f',
    String(message.numSegments),
    String(message.numMedia),
    null,
    message.viaProxy ? 't' : 'f',
    null,
    message.events[0]!.receivedAt.toISOString(),
    last.receivedAt.toISOString(),
    last.receivedAt.toISOString(),
    state.firstTerminalAt?.toISOString() ?? null,
  ]
    .map(copyField)
    .join('\t')}\n`;
}

/** COPY's text format: \N is NULL; backslash, tab, newline and carriage return escaped. */
function copyField(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(
    /[\\\t\n\r]/g,
    (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!,
  );
}

function uuid(random: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** A small seeded PRNG: the same N always generates the same rows. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

if (require.main === module) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is required');
    process.exit(1);
  }
  generateEvents(url, Number(process.argv[2] ?? 10_000_000), (line) => console.log(line)).then(
    (result) => console.log(JSON.stringify(result)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
