-- Retention (RETENTION_DAYS, src/retention): where the removed history ends in the change feed.
--
-- Retention removes whole messages (their events and relay jobs with them) once their last
-- activity is older than the horizon. A feed consumer whose cursor lies before the newest
-- removed event would miss events without knowing: the feed answers such a cursor
-- 410 cursor_expired instead (src/feed/feed.routes.ts), which needs this position. One row,
-- raised by every retention step in the transaction that removes the events.
--
-- Additive (a new table): nothing older releases read or write changes.
CREATE TABLE sw_status_retention (
  one         boolean PRIMARY KEY DEFAULT true CHECK (one),
  removed_tx  xid8    NOT NULL DEFAULT '0',   -- (tx, seq) of the newest removed event
  removed_seq bigint  NOT NULL DEFAULT 0
);
INSERT INTO sw_status_retention (one) VALUES (true);
