-- The stats rollups' trigger function (0009), run with a search_path of its own.
--
-- Why: its statements (format, array_agg, sum, the operators between them) were resolved on
-- the search_path of whichever session fires the trigger — sw-status's, at every fold. Where
-- every role may create objects in a schema on that path (`public` on PostgreSQL 14 and older,
-- and on clusters upgraded from them), another role's `array_agg(timestamptz)` or
-- `format(text, text, text, text, text)` matches a call's argument types exactly and so beats
-- PostgreSQL's own polymorphic one (CVE-2018-1058): it ran as sw-status's role. With
-- `search_path = pg_catalog, pg_temp` only PostgreSQL's functions and operators are found; the
-- narrow tables are named in the schema of the table whose trigger fired (the transition tables
-- new_rows and old_rows are found by name whatever the path).
--
-- The signature, triggers and behaviour are unchanged: additive, oldest_reader unchanged, and an
-- older release's fold during a rolling update fires this same function.
CREATE OR REPLACE FUNCTION stats_narrow_rollups() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  t       text := TG_ARGV[0];
  counts  text := TG_ARGV[1];
  latency text := TG_ARGV[2];
  -- The narrow tables live beside the wide one whose trigger this is.
  home    text := TG_TABLE_SCHEMA;
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
      INSERT INTO %5$I.%2$I AS r (%4$I, api, status, error_code, messages, conflicts, final_within_10s)
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
      INSERT INTO %5$I.%3$I AS r (%4$I, api, latency_bucket, messages)
      SELECT %4$I, api, latency_bucket, sum(sign * messages)
      FROM changes WHERE latency_bucket >= 0 GROUP BY 1, 2, 3
      HAVING sum(sign * messages) <> 0
      ORDER BY 1, 2, 3
      ON CONFLICT (%4$I, api, latency_bucket) DO UPDATE SET
        messages = r.messages + excluded.messages
    )
    SELECT array_agg(DISTINCT %4$I) FROM changes$sql$, changes, counts, latency, t, home)
  INTO touched;
  -- In a statement of its own (the one above cannot see its own upserts): rows that came down
  -- to zero go, as the fold removes them from the wide tables.
  IF touched IS NOT NULL THEN
    EXECUTE format('DELETE FROM %I.%I WHERE %I = ANY($1) AND messages = 0', home, counts, t)
      USING touched;
    EXECUTE format('DELETE FROM %I.%I WHERE %I = ANY($1) AND messages = 0', home, latency, t)
      USING touched;
  END IF;
  RETURN NULL;
END
$fn$;
