-- sw-status initial schema. Forward-only: never edit once landed; add 0002_… instead.

-- One row per provider message id: the derived current state. Rebuilt from status_events
-- by the projection rules in src/messages/projection.ts; never the source of truth.
CREATE TABLE messages (
  id                      text        PRIMARY KEY,            -- cXML MessageSid / native id
  api                     text        NOT NULL CHECK (api IN ('cxml', 'native')),
  project_id              text,
  "from"                  text,
  "to"                    text,
  kind                    text        CHECK (kind IN ('sms', 'mms')),
  body                    text,                               -- only when STORE_BODY=true
  status                  text        NOT NULL,
  raw_status              text        NOT NULL,
  status_rank             smallint    NOT NULL,
  -- Provider and receive time of the event that set the current status: the tie-breakers
  -- between two terminal statuses of equal rank.
  status_provider_timestamp timestamptz,
  status_received_at      timestamptz NOT NULL,
  error_code              text,                               -- text: codes differ per API
  error_message           text,
  conflict                boolean     NOT NULL DEFAULT false,
  num_segments            integer,
  num_media               integer,
  ref                     text,                               -- callback-token ref of the send
  sent_via_proxy          boolean     NOT NULL DEFAULT false,
  client_status_callback  text,
  created_at              timestamptz NOT NULL DEFAULT now(),
  updated_at              timestamptz NOT NULL DEFAULT now(),
  last_event_at           timestamptz NOT NULL
);

-- Keyset pagination "newest activity first": (last_event_at, id) is the cursor, and each
-- filter gets a composite index ending in the same key so a filtered page is an index range.
CREATE INDEX messages_activity_idx   ON messages (last_event_at DESC, id DESC);
CREATE INDEX messages_status_idx     ON messages (status, last_event_at DESC, id DESC);
CREATE INDEX messages_to_idx         ON messages ("to", last_event_at DESC, id DESC);
CREATE INDEX messages_from_idx       ON messages ("from", last_event_at DESC, id DESC);
CREATE INDEX messages_api_idx        ON messages (api, last_event_at DESC, id DESC);
CREATE INDEX messages_error_code_idx ON messages (error_code, last_event_at DESC, id DESC)
  WHERE error_code IS NOT NULL;

-- Append-only history: one row per accepted, non-duplicate event.
CREATE TABLE status_events (
  seq                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id         text        NOT NULL,
  api                text        NOT NULL CHECK (api IN ('cxml', 'native')),
  status             text        NOT NULL,
  raw_status         text        NOT NULL,
  error_code         text,
  error_message      text,
  source             text        NOT NULL CHECK (source IN ('proxy', 'callback', 'reconcile', 'replay')),
  provider_timestamp timestamptz,
  received_at        timestamptz NOT NULL,
  -- sha256(message_id, raw_status, error_code, provider_timestamp): 32 bytes instead of a
  -- ~100-byte text key keeps this unique index small at tens of millions of rows.
  dedupe_key         bytea       NOT NULL UNIQUE,
  raw                jsonb       NOT NULL
);

CREATE INDEX status_events_message_idx ON status_events (message_id, seq);
