import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { transactionIdsAhead } from './transaction-id-rebase';

/**
 * Which schema a database has, and whether this release can run on it.
 *
 * A schema's version is the number of its newest applied migration (`0004_relay` → 4); the
 * applied migrations are the rows of `kysely_migration`. A release needs every migration it
 * ships. A database may also be ahead of a release: during a rolling update the migration Job
 * applies release N+1's migrations while release N's pods still serve. Whether N may keep
 * serving is recorded by the migrations themselves in `sw_status_schema.oldest_reader`: the
 * oldest schema version whose code is still safe on this schema.
 *
 * - An additive migration (a new table, a nullable column, an index) leaves it alone: every
 *   release that has its own migrations keeps working.
 * - A migration that breaks older code (drops or renames what they read or write, adds a
 *   constraint they would violate) raises it, in its own SQL:
 *   `UPDATE sw_status_schema SET oldest_reader = GREATEST(oldest_reader, 7);`
 *   where 7 is the first version whose code works with the change. Releases older than that
 *   stop being ready instead of misbehaving.
 *
 * The table is created by the migration runner (src/db/migrate.ts) before the first migration
 * it applies, so every migration may update it; a database migrated before it existed has no
 * breaking migration, and counts as oldest_reader 0.
 */

/** Creates the marker (one row) if missing; runs inside the migration transaction. */
export const CREATE_SCHEMA_MARKER = sql`
  CREATE TABLE IF NOT EXISTS sw_status_schema (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    oldest_reader integer NOT NULL DEFAULT 0
  );
  INSERT INTO sw_status_schema (one) VALUES (true) ON CONFLICT (one) DO NOTHING`;

/** The number a migration's file name starts with; NaN when it has none. */
export function migrationVersion(name: string): number {
  const digits = /^(\d+)/.exec(name)?.[1];
  return digits === undefined ? Number.NaN : Number(digits);
}

/** The highest version among migration names (0 for none). */
export function versionOf(names: readonly string[]): number {
  return names.reduce((max, name) => {
    const version = migrationVersion(name);
    return Number.isNaN(version) ? max : Math.max(max, version);
  }, 0);
}

/** What a database says about its schema. */
export interface SchemaFound {
  applied: readonly string[];
  oldestReader: number;
  /**
   * Stored transaction ids lie beyond the cluster's next one: the database was restored from
   * a dump or moved from another cluster, and not rebased yet (src/db/transaction-id-rebase.ts).
   */
  restored?: boolean;
}

export type SchemaVerdict =
  | { state: 'ok'; version: number; needs: number }
  /** Ahead of this release, but its migrations say this release is still safe on it. */
  | { state: 'ahead'; version: number; needs: number; oldestReader: number }
  /**
   * A migration missing — or, with `missing` empty, none missing but the database restored
   * from another cluster and not rebased yet: the migration runner does both.
   */
  | { state: 'too_old'; version: number; needs: number; missing: readonly string[] }
  | { state: 'too_new'; version: number; needs: number; oldestReader: number };

/**
 * The compatibility rule: every known migration applied, and no newer one that excludes us.
 * A restored database not rebased yet is as good as one with a migration missing: the same
 * command repairs it, and until then callbacks for its older messages could not be stored.
 */
export function judgeSchema(known: readonly string[], found: SchemaFound): SchemaVerdict {
  const applied = new Set(found.applied);
  const needs = versionOf(known);
  const version = versionOf(found.applied);
  const missing = known.filter((name) => !applied.has(name));
  if (missing.length > 0) return { state: 'too_old', version, needs, missing };
  const knownSet = new Set(known);
  const unknown = found.applied.filter((name) => !knownSet.has(name));
  if (unknown.length > 0 && found.oldestReader > needs) {
    return { state: 'too_new', version, needs, oldestReader: found.oldestReader };
  }
  if (found.restored) return { state: 'too_old', version, needs, missing: [] };
  if (unknown.length === 0) return { state: 'ok', version, needs };
  return { state: 'ahead', version, needs, oldestReader: found.oldestReader };
}

/** Whether code built for `known` may run on a database in this state. */
export function isCompatible(verdict: SchemaVerdict): boolean {
  return verdict.state === 'ok' || verdict.state === 'ahead';
}

/** One line for the log and /readyz: what is wrong and what to do about it. */
export function describeSchema(verdict: SchemaVerdict): string {
  const v = (n: number): string => String(n).padStart(4, '0');
  switch (verdict.state) {
    case 'ok':
      return `database schema ${v(verdict.version)} is the one this release needs`;
    case 'ahead':
      return (
        `database schema ${v(verdict.version)} is ahead of this release (${v(verdict.needs)}) ` +
        `and marked safe for releases from ${v(verdict.oldestReader)}`
      );
    case 'too_old':
      if (verdict.missing.length === 0) {
        return (
          'database restored from another cluster: its stored transaction ids lie beyond this ' +
          "cluster's next one, so callbacks for its older messages would fail and restored " +
          'events would come back in the change feed; run the migrations, which rebase them ' +
          "(node dist/db/migrate-cli.js, or the release's migration Job)"
        );
      }
      return (
        `database schema too old: ${verdict.missing.join(', ')} not applied ` +
        `(this release needs ${v(verdict.needs)}); run the migrations ` +
        `(node dist/db/migrate-cli.js, or the release's migration Job)`
      );
    case 'too_new':
      return (
        `database schema too new: ${v(verdict.version)} is safe only for releases from ` +
        `${v(verdict.oldestReader)}, this release reads ${v(verdict.needs)}; roll out a newer release`
      );
  }
}

/**
 * Null when code built for `known` may write to this database, else the one line that says
 * why not (describeSchema). Throws when the database cannot be asked.
 */
export async function schemaProblem<T>(
  db: Kysely<T>,
  known: readonly string[],
): Promise<string | null> {
  const verdict = judgeSchema(known, await readSchema(db));
  return isCompatible(verdict) ? null : describeSchema(verdict);
}

const UNDEFINED_TABLE = '42P01';

/**
 * Reads the applied migrations, the marker, and whether the stored transaction ids come from
 * another cluster; a database never migrated has neither table.
 */
export async function readSchema<T>(db: Kysely<T>): Promise<SchemaFound> {
  const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`
    .execute(db)
    .then(
      (result) => result.rows.map((row) => row.name),
      (error: unknown) => ifUndefinedTable(error, [] as string[]),
    );
  const oldestReader = await sql<{ oldest_reader: number }>`
    SELECT oldest_reader FROM sw_status_schema`
    .execute(db)
    .then(
      (result) => result.rows[0]?.oldest_reader ?? 0,
      (error: unknown) => ifUndefinedTable(error, 0),
    );
  const restored = (await transactionIdsAhead(db)) !== null;
  return { applied, oldestReader, restored };
}

function ifUndefinedTable<T>(error: unknown, fallback: T): T {
  if ((error as { code?: unknown }).code === UNDEFINED_TABLE) return fallback;
  throw error;
}
