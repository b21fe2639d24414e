-- The change feed (GET /v1/events) and the stats rollups (GET /v1/stats).
--
-- Safe on a populated table. Every ADD COLUMN below is a catalog change only: a constant
-- default ('0') is stored once as the value of the rows that already exist (PostgreSQL ≥ 11),
-- where `ADD COLUMN tx xid8 DEFAULT pg_current_xact_id()` — a volatile default — would rewrite
-- the whole table under an ACCESS EXCLUSIVE lock, evaluating the default once per row. The
-- volatile default is set afterwards, for new rows only. Existing events thus get tx = 0: they
-- were all committed before this migration could lock the table, so they form the feed's first
-- stretch, in seq order.
--
-- What still takes time on a large table is building the two indexes (about 10 s per 10 M
-- events), and this file runs in one transaction, so the tables stay locked until it commits;
-- callbacks are spooled meanwhile (nothing is lost) and queries wait. On a large store, run
-- these first with psql — they lock nothing for long — and this migration then skips them:
--   ALTER TABLE status_events ADD COLUMN IF NOT EXISTS tx xid8 NOT NULL DEFAULT '0';
--   ALTER TABLE status_events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS status_events_feed_idx ON status_events (tx, seq);
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_created_idx ON messages (created_at DESC, id DESC);
-- A lock that cannot be had within 10 s (a long transaction holds the table) fails the
-- migration instead of queueing every write behind it; run it again later.
SET LOCAL lock_timeout = '10s';

-- Stats rollups: per minute (and per hour) in which messages were first seen, how many are in
-- each (api, status, error code, latency bucket), with their conflicts and how many became final
-- within 10 s. Writers only append deltas (a batch's net change: −1 for a message's old
-- contribution, +1 for its new one), so concurrent batches never wait on each other's row
-- locks; one replica at a time folds the deltas into the minute and hour tables
-- (src/stats/stats-compactor.ts). A stats query reads rollups + deltas in one statement.
CREATE TABLE stats_deltas (
  minute           timestamptz NOT NULL,
  api              text        NOT NULL,
  status           text        NOT NULL,
  error_code       text        NOT NULL,            -- '' when the message has none
  latency_bucket   smallint    NOT NULL,            -- -1 while not final (src/messages/rollup.ts)
  messages         integer     NOT NULL,
  conflicts        integer     NOT NULL,
  final_within_10s integer     NOT NULL
);

CREATE TABLE stats_minutes (
  minute           timestamptz NOT NULL,
  api              text        NOT NULL,
  status           text        NOT NULL,
  error_code       text        NOT NULL,
  latency_bucket   smallint    NOT NULL,
  messages         bigint      NOT NULL,
  conflicts        bigint      NOT NULL,
  final_within_10s bigint      NOT NULL,
  -- The counts ride in the index: a stats query reads it alone (index-only scan).
  PRIMARY KEY (minute, api, status, error_code, latency_bucket)
    INCLUDE (messages, conflicts, final_within_10s)
);

CREATE TABLE stats_hours (
  hour             timestamptz NOT NULL,
  api              text        NOT NULL,
  status           text        NOT NULL,
  error_code       text        NOT NULL,
  latency_bucket   smallint    NOT NULL,
  messages         bigint      NOT NULL,
  conflicts        bigint      NOT NULL,
  final_within_10s bigint      NOT NULL,
  PRIMARY KEY (hour, api, status, error_code, latency_bucket)
    INCLUDE (messages, conflicts, final_within_10s)
);

-- The messages already stored, before any lock is taken (a read: writers go on). Their time to
-- a final status is unknown (first_terminal_at is new), so they count as not final within 10 s
-- and stay out of the latency percentiles, exactly as src/messages/rollup.ts counts them later.
-- Changes other replicas commit while this migration runs are not in it: after a rolling
-- upgrade, `npm run stats:rebuild` recounts the rollups from the messages table.
INSERT INTO stats_minutes
SELECT date_trunc('minute', created_at, 'UTC'), api, status, coalesce(error_code, ''), -1,
       count(*), count(*) FILTER (WHERE conflict), 0
FROM messages GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;
INSERT INTO stats_hours
SELECT date_trunc('hour', minute, 'UTC'), api, status, error_code, latency_bucket,
       sum(messages), sum(conflicts), sum(final_within_10s)
FROM stats_minutes GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5;

-- The feed's cursor: (transaction id, seq), read only below the oldest running transaction
-- (src/feed/feed.repository.ts).
ALTER TABLE status_events ADD COLUMN IF NOT EXISTS tx xid8 NOT NULL DEFAULT '0';
ALTER TABLE status_events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
-- The message's status right after this event, from the projection's fold (written with the
-- event; NULL for events stored before this migration, which the feed folds when it reads them).
ALTER TABLE status_events ADD COLUMN IF NOT EXISTS message_status text;

-- The transaction that last applied events to the message: a batch whose transaction id is
-- lower than this one must not fold after it (src/messages/record-events.ts), so a message's
-- events are folded in the feed's order.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS applied_tx xid8 NOT NULL DEFAULT '0';
ALTER TABLE messages ALTER COLUMN applied_tx SET DEFAULT pg_current_xact_id();
-- When the message first reached a final status (rank ≥ 50): the end of its latency.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS first_terminal_at timestamptz;

CREATE INDEX IF NOT EXISTS status_events_feed_idx ON status_events (tx, seq);
-- order=created, created_since/created_until and the stats' edge minutes.
CREATE INDEX IF NOT EXISTS messages_created_idx ON messages (created_at DESC, id DESC);
