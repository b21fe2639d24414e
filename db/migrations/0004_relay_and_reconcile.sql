-- Relay outbox (DESIGN §10) and reconciliation sweep state (DESIGN §11).
--
-- Safe on a populated table:
-- * ADD COLUMN with a constant default (or none) is a catalogue change since PostgreSQL 11: no
--   table rewrite, the ACCESS EXCLUSIVE lock is held for milliseconds. lock_timeout makes the
--   migration fail (and the next start retry it) rather than queue behind a long transaction
--   while every callback queues behind it.
-- * relay_jobs is a new table: its indexes are built empty.
-- * messages_sweep_idx is partial (only messages the sweep may still look up), but CREATE INDEX
--   still reads the whole table under a SHARE lock, which blocks writes (not reads) for the
--   build: about a second per million messages. The ingest path spools callbacks meanwhile.
--   On a large table create it beforehand, without blocking anything:
--     CREATE INDEX CONCURRENTLY messages_sweep_idx ON messages (last_event_at)
--       WHERE status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent');
--   (after adding the `stuck` column below); IF NOT EXISTS then makes this step a no-op.
SET LOCAL lock_timeout = '5s';

-- Sweep state of a message. A new event resets it (record-events.repository.ts, SAVE_MESSAGES):
-- a message is looked up again only after something moved it.
ALTER TABLE messages
  ADD COLUMN stuck             boolean     NOT NULL DEFAULT false, -- still not final after the last step
  ADD COLUMN sweep_step        smallint    NOT NULL DEFAULT 0,     -- lookups done since the last event
  ADD COLUMN sweep_lease_until timestamptz,                        -- a replica is looking it up
  ADD COLUMN sweep_checked_at  timestamptz,                        -- last lookup
  ADD COLUMN sweep_error       text;                               -- e.g. not_found, unauthorized

-- What the sweep reads: non-final messages by age of their last event. An MMS at `sent` is final
-- (MMS has no delivery receipts) and a stuck message waits for a new event: neither is indexed.
CREATE INDEX IF NOT EXISTS messages_sweep_idx ON messages (last_event_at)
  WHERE status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent');

-- Stuck messages for `GET /v1/messages?stuck=true`, newest activity first like every list.
CREATE INDEX IF NOT EXISTS messages_stuck_idx ON messages (last_event_at DESC, id DESC)
  WHERE stuck;

-- One relay of one stored event to the caller's own status callback, written in the same
-- transaction as the event (transactional outbox). A message's jobs go out one at a time in id
-- order, which is the order its events were committed in (ids are taken with the message row
-- locked).
CREATE TABLE relay_jobs (
  id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id       text        NOT NULL,
  event_seq        bigint,                                   -- status_events.seq
  url              text        NOT NULL,                     -- the caller's callback URL
  host             text        NOT NULL,                     -- scheme://host:port: per-host limits
  method           text        NOT NULL CHECK (method IN ('POST', 'GET')),
  content_type     text,
  -- The callback exactly as received (form or JSON bytes; a GET's query). Cleared once delivered;
  -- once dead only the message body is removed, so a retry still sends a valid callback.
  -- Kept whole with STORE_BODY=true.
  payload          bytea,
  -- Which SIGNALWIRE_SIGNING_KEYS key verified the original: a fingerprint, never the key.
  -- NULL: the first key (token-authenticated callbacks, reconciliation).
  signing_key_ref  text,
  state            text        NOT NULL DEFAULT 'pending'
                               CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts         integer     NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_until      timestamptz,                              -- a replica is sending it
  last_status      integer,                                  -- HTTP status of the last answer
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz
)
-- A job is updated twice (claimed with a lease, then its outcome): room on the page lets the
-- lease update be a HOT update, which touches no index.
WITH (fillfactor = 70);

-- Due jobs (the claim); a message's jobs in order (per-message ordering, ?message_id=);
-- dead letters (?state=dead, the dead gauge). Delivered jobs are listed through the primary key.
CREATE INDEX relay_jobs_due_idx     ON relay_jobs (next_attempt_at) WHERE state = 'pending';
CREATE INDEX relay_jobs_message_idx ON relay_jobs (message_id, id);
CREATE INDEX relay_jobs_dead_idx    ON relay_jobs (id) WHERE state = 'dead';
