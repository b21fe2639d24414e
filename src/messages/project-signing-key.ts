import { sql } from 'kysely';
import type { Expression, RawBuilder } from 'kysely';
import type { Db } from '../db/database';

/**
 * The newest relay jobs read for a project's key: a bound however large the outbox, counted in
 * jobs, signed or not. Counted in signed jobs (as first written) the walk read every job of an
 * outbox of token-admitted (unsigned) relays — 150 000 rows per claim, measured — since no
 * index leads to the signed ones. One primary-key range; each signed job in it one
 * primary-key look at its message. A project whose signed callbacks are relayed at all finds
 * its newest among them; one that has none this recent is signed as one without history
 * (signing.ts relaySigningKey).
 */
export const PROJECT_KEY_WINDOW = 2_000;

/**
 * The signing key that verified the newest signed callback of `project` relayed (the newest
 * relay job of one of its messages naming a key: signing.ts signingKeyRef), among the last
 * PROJECT_KEY_WINDOW jobs; null when none. With keys listed bound to no project,
 * nothing else tells which one the project's app validates with: reconciliation's callbacks
 * (src/reconcile) and relays no signature chose a key for (src/relay, claimDueJobs) are signed
 * with it (DESIGN §10). Walks relay_jobs' primary key down from the newest, and stops at the
 * first job of the project.
 */
export function projectSigningKeyRefSql(
  project: Expression<string | null>,
  knownKeyRefs?: readonly string[],
): RawBuilder<string | null> {
  // `knownKeyRefs`: only a key configured now counts — a reconciliation relay carries the
  // message's own (perhaps retired) key's reference, and taken as the project's newest it left
  // every later relay of the project unsigned. The LIMIT keeps the window a subquery of its
  // own: flattened, the planner may start from the project's messages instead.
  const known =
    knownKeyRefs === undefined ? sql`` : sql`AND signing_key_ref = ANY(${knownKeyRefs}::text[])`;
  return sql<string | null>`(
    SELECT recent.signing_key_ref
    FROM (SELECT id, message_id, signing_key_ref FROM relay_jobs
          WHERE id > (SELECT coalesce(max(id), 0) FROM relay_jobs) - ${PROJECT_KEY_WINDOW}
            AND signing_key_ref IS NOT NULL ${known}
          ORDER BY id DESC LIMIT ${PROJECT_KEY_WINDOW}) recent
    JOIN messages m ON m.id = recent.message_id
    WHERE m.project_id = ${project}
    ORDER BY recent.id DESC
    LIMIT 1)`;
}

/** projectSigningKeyRefSql for one project. */
export async function projectSigningKeyRef(db: Db, project: string): Promise<string | null> {
  const { rows } = await sql<{ ref: string | null }>`
    SELECT ${projectSigningKeyRefSql(sql.val(project))} AS ref`.execute(db);
  return rows[0]?.ref ?? null;
}
