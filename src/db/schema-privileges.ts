import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { Logger } from '../logger';

/**
 * Schemas on sw-status's search_path in which every role may create objects (PUBLIC holds
 * CREATE): PostgreSQL 14 and older grant that on `public`, and clusters upgraded from them keep
 * it. Another role that can connect (PUBLIC may connect to a database by default) can then
 * define a function there — `unnest(text[])`, `count(timestamptz)` — that matches the argument
 * types of a call in sw-status's statements better than PostgreSQL's own polymorphic one, and
 * it runs as sw-status's role with the statement's values in hand (CVE-2018-1058). The hottest
 * such calls name pg_catalog; the cure for all of them is the privilege.
 */
export async function schemasOpenToAll<T>(
  db: Kysely<T>,
): Promise<{ name: string; quoted: string }[]> {
  // quote_ident: a schema named like a reserved word (`user`) is quoted, as SQL needs it.
  const { rows } = await sql<{ name: string; quoted: string }>`
    SELECT s.name, pg_catalog.quote_ident(s.name) AS quoted
    FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) WITH ORDINALITY AS s(name, ord)
    JOIN pg_catalog.pg_namespace n ON n.nspname = s.name
    WHERE EXISTS (
      SELECT 1
      FROM pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
      WHERE a.grantee = 0 AND a.privilege_type = 'CREATE')
    ORDER BY s.ord`.execute(db);
  return rows;
}

/** Says so, with the fix, when some schema on the search path is open to every role. */
export async function warnWhereSchemasOpenToAll<T>(
  db: Kysely<T>,
  logger: Pick<Logger, 'warn'>,
): Promise<void> {
  const schemas = await schemasOpenToAll(db);
  if (schemas.length === 0) return;
  const revoke = schemas
    .map(({ quoted }) => `REVOKE CREATE ON SCHEMA ${quoted} FROM PUBLIC`)
    .join('; ');
  const names = schemas.map(({ name }) => name);
  logger.warn(
    { schemas: names },
    `every role may create objects in ${names.join(', ')}, on sw-status's search_path: another ` +
      "role could define a function sw-status's statements would call, run as sw-status's role " +
      `(CVE-2018-1058). As the schema's owner: ${revoke} (PostgreSQL 15's default; README "PostgreSQL for sw-status")`,
  );
}
