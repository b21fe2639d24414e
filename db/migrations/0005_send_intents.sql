-- Send intents: the caller's own status callback, known before SignalWire answers the send.
--
-- The proxy records a message (with `client_status_callback`) only once SignalWire has answered
-- the create call, but SignalWire may call back before that answer arrives. Such a callback,
-- authenticated by the send's token, creates the message without a client callback, and its
-- relay (DESIGN §10) would be lost: the relay needs the callback's exact bytes, which are kept
-- only in a relay job written with the event. So the proxy writes the intent, keyed by the
-- token's ref, BEFORE it forwards the send, and the write path reads it for a message bound to
-- that ref that has no client callback yet (src/messages/send-intents.ts).
--
-- Lifetime: deleted in the transaction that records the proxy's own event for the send (from
-- then on the message row holds the URL), or at once when SignalWire refuses the send or cannot
-- be reached. What is left (a send that timed out, or whose answer could not be recorded) expires
-- with its callback token (CALLBACK_TOKEN_TTL_DAYS: no callback can use it afterwards); each new
-- intent deletes a few expired ones, so the table holds only sends in flight plus those rare
-- leftovers, without a cleanup job.
--
-- Additive (a new table): older releases keep running on this schema; oldest_reader unchanged.
CREATE TABLE send_intents (
  ref                    text        PRIMARY KEY,             -- the callback token's ref
  client_status_callback text        NOT NULL,
  created_at             timestamptz NOT NULL DEFAULT now()
);

-- The expiry's scan, oldest first.
CREATE INDEX send_intents_created_idx ON send_intents (created_at);
