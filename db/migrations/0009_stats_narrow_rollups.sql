-- Narrow stats rollups: what GET /v1/stats reads instead of stats_hours / stats_minutes.
--
-- The summary never crosses the latency bucket with the other keys: it needs counts per
-- (api, status, error code) and, apart, a latency histogram. Keyed by all of them together
-- (0003), a day's rollups are ~11 500 rows, the ~45 latency buckets of an hour multiplying
-- every status and error key. Here the same counts are kept twice, narrower: per (time, api,
-- status, error code) and per (time, api, latency bucket ≥ 0): several times fewer rows.
--
-- They are derived: statement-level AFTER triggers on the wide tables add what each statement
-- changed (new rows +, old rows −), so every writer of the wide tables keeps them equal to their
-- projections without knowing about them — this release's fold (src/stats/stats-compactor.ts),
-- `npm run stats:rebuild`, and an older release's fold during a rolling update. Those writers
-- already run one at a time (the rollup advisory lock), and ingest only appends to stats_deltas:
-- nothing here is on the write path of a callback. Older releases keep reading and writing the
-- wide tables as before: additive, oldest_reader unchanged.
--
-- The wide tables are locked against writes (not reads) first, in the order the fold and the
-- rebuild write them (no deadlock with one that is running), then the triggers are created and
-- the narrow tables filled, all in this one transaction: no fold lands between the fill and the
-- triggers. A rebuild holding the wide tables longer than lock_timeout fails this migration
-- instead; run it again.
SET LOCAL lock_timeout = '10s';
LOCK TABLE stats_minutes, stats_hours IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE stats_hour_counts (
  hour             timestamptz NOT NULL,
  api              text        NOT NULL,
  status           text        NOT NULL,
  error_code       text        NOT NULL,
  messages         bigint      NOT NULL,
  conflicts        bigint      NOT NULL,
  final_within_10s bigint      NOT NULL,
  -- The counts ride in the index: a stats query reads it alone (index-only scan).
  PRIMARY KEY (hour, api, status, error_code) INCLUDE (messages, conflicts, final_within_10s)
);

-- Final messages only (latency_bucket ≥ 0): the not-final ones are no part of the histogram.
CREATE TABLE stats_hour_latency (
  hour           timestamptz NOT NULL,
  api            text        NOT NULL,
  latency_bucket smallint    NOT NULL,
  messages       bigint      NOT NULL,
  PRIMARY KEY (hour, api, latency_bucket) INCLUDE (messages)
);

CREATE TABLE stats_minute_counts (
  minute           timestamptz NOT NULL,
  api              text        NOT NULL,
  status           text        NOT NULL,
  error_code       text        NOT NULL,
  messages         bigint      NOT NULL,
  conflicts        bigint      NOT NULL,
  final_within_10s bigint      NOT NULL,
  PRIMARY KEY (minute, api, status, error_code) INCLUDE (messages, conflicts, final_within_10s)
);

CREATE TABLE stats_minute_latency (
  minute         timestamptz NOT NULL,
  api            text        NOT NULL,
  latency_bucket smallint    NOT NULL,
  messages       bigint      NOT NULL,
  PRIMARY KEY (minute, api, latency_bucket) INCLUDE (messages)
);

-- One function for the six triggers. Arguments: the time column ('hour' or 'minute', the same
-- name in the wide and the narrow tables), the counts table, the latency table. Transition
-- tables are visible to EXECUTE, and their names differ by event, hence the dynamic SQL.
CREATE FUNCTION stats_narrow_rollups() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  t       text := TG_ARGV[0];
  counts  text := TG_ARGV[1];
  latency text := TG_ARGV[2];
  changes text := CASE TG_OP
    WHEN 'INSERT' THEN 'SELECT 1 AS sign, * FROM new_rows'
    WHEN 'DELETE' THEN 'SELECT -1 AS sign, * FROM old_rows'
    ELSE 'SELECT 1 AS sign, * FROM new_rows UNION ALL SELECT -1 AS sign, * FROM old_rows'
  END;
  touched timestamptz[];
BEGIN
  -- Upserts in key order, like the fold: two writers would take row locks in the same order.
  EXECUTE format($sql$
    WITH changes AS (%1$s),
    counted AS (
      INSERT INTO %2$I AS r (%4$I, api, status, error_code, messages, conflicts, final_within_10s)
      SELECT %4$I, api, status, error_code, sum(sign * messages), sum(sign * conflicts),
             sum(sign * final_within_10s)
      FROM changes GROUP BY 1, 2, 3, 4
      HAVING sum(sign * messages) <> 0 OR sum(sign * conflicts) <> 0
          OR sum(sign * final_within_10s) <> 0
      ORDER BY 1, 2, 3, 4
      ON CONFLICT (%4$I, api, status, error_code) DO UPDATE SET
        messages = r.messages + excluded.messages, conflicts = r.conflicts + excluded.conflicts,
        final_within_10s = r.final_within_10s + excluded.final_within_10s
    ), histogram AS (
      INSERT INTO %3$I AS r (%4$I, api, latency_bucket, messages)
      SELECT %4$I, api, latency_bucket, sum(sign * messages)
      FROM changes WHERE latency_bucket >= 0 GROUP BY 1, 2, 3
      HAVING sum(sign * messages) <> 0
      ORDER BY 1, 2, 3
      ON CONFLICT (%4$I, api, latency_bucket) DO UPDATE SET
        messages = r.messages + excluded.messages
    )
    SELECT array_agg(DISTINCT %4$I) FROM changes$sql$, changes, counts, latency, t)
  INTO touched;
  -- In a statement of its own (the one above cannot see its own upserts): rows that came down
  -- to zero go, as the fold removes them from the wide tables.
  IF touched IS NOT NULL THEN
    EXECUTE format('DELETE FROM %I WHERE %I = ANY($1) AND messages = 0', counts, t) USING touched;
    EXECUTE format('DELETE FROM %I WHERE %I = ANY($1) AND messages = 0', latency, t) USING touched;
  END IF;
  RETURN NULL;
END
$fn$;

-- A trigger with transition tables has one event only: three per table.
CREATE TRIGGER stats_hours_narrow_insert AFTER INSERT ON stats_hours
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION stats_narrow_rollups('hour', 'stats_hour_counts', 'stats_hour_latency');
CREATE TRIGGER stats_hours_narrow_update AFTER UPDATE ON stats_hours
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION stats_narrow_rollups('hour', 'stats_hour_counts', 'stats_hour_latency');
CREATE TRIGGER stats_hours_narrow_delete AFTER DELETE ON stats_hours
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION stats_narrow_rollups('hour', 'stats_hour_counts', 'stats_hour_latency');
CREATE TRIGGER stats_minutes_narrow_insert AFTER INSERT ON stats_minutes
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION stats_narrow_rollups('minute', 'stats_minute_counts', 'stats_minute_latency');
CREATE TRIGGER stats_minutes_narrow_update AFTER UPDATE ON stats_minutes
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION stats_narrow_rollups('minute', 'stats_minute_counts', 'stats_minute_latency');
CREATE TRIGGER stats_minutes_narrow_delete AFTER DELETE ON stats_minutes
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION stats_narrow_rollups('minute', 'stats_minute_counts', 'stats_minute_latency');

-- What the wide tables hold now: one pass over each.
INSERT INTO stats_hour_counts
SELECT hour, api, status, error_code, sum(messages), sum(conflicts), sum(final_within_10s)
FROM stats_hours GROUP BY 1, 2, 3, 4 HAVING sum(messages) <> 0 ORDER BY 1, 2, 3, 4;
INSERT INTO stats_hour_latency
SELECT hour, api, latency_bucket, sum(messages)
FROM stats_hours WHERE latency_bucket >= 0 GROUP BY 1, 2, 3 HAVING sum(messages) <> 0
ORDER BY 1, 2, 3;
INSERT INTO stats_minute_counts
SELECT minute, api, status, error_code, sum(messages), sum(conflicts), sum(final_within_10s)
FROM stats_minutes GROUP BY 1, 2, 3, 4 HAVING sum(messages) <> 0 ORDER BY 1, 2, 3, 4;
INSERT INTO stats_minute_latency
SELECT minute, api, latency_bucket, sum(messages)
FROM stats_minutes WHERE latency_bucket >= 0 GROUP BY 1, 2, 3 HAVING sum(messages) <> 0
ORDER BY 1, 2, 3;
-- Statistics now rather than at autovacuum's next pass: the first stats query plans with them.
ANALYZE stats_hour_counts, stats_hour_latency, stats_minute_counts, stats_minute_latency;
