import type { TestDatabase } from '../../helpers/test-database';

/**
 * Makes an event's insert fail transiently — 57014, what a statement timeout raises — while
 * its `error_code` (a test's tag for it) is listed in the table `name`: its own transaction
 * fails while its message's next event's would not. Insert a tag to start its failures,
 * delete it to end them.
 */
export async function failTransientlyWhileListed(
  database: TestDatabase,
  name: string,
): Promise<void> {
  await database.pool.query(`
    CREATE TABLE ${name} (tag text PRIMARY KEY);
    CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM ${name} WHERE tag = NEW.error_code) THEN
        RAISE EXCEPTION 'transient failure for %', NEW.error_code USING ERRCODE = '57014';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER ${name} BEFORE INSERT ON status_events
      FOR EACH ROW EXECUTE FUNCTION ${name}();
  `);
}
