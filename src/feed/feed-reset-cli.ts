import { redactSecrets } from '../config';
import { cliDatabaseUrl, namingUnreachable } from '../db/cli-database-url';
import { createDb } from '../db/database';
import { StartupError } from '../process/startup-error';
import { resetFeedByOperator } from './feed-epoch';

/**
 * `npm run feed:reset` / `node dist/feed/feed-reset-cli.js`: the change feed's reset by hand,
 * for what the pods' checks (src/feed/feed-epoch.ts) cannot see or would get wrong. Needs only
 * DATABASE_URL (the primary), like `npm run migrate`; prints one line of what it did.
 *
 * - default: records a feed reset now (every cursor from before answers 410 cursor_expired)
 *   and notes the current epoch. Run it after restoring a snapshot of the data directory in
 *   place with the pods stopped: the system identifier, timeline and oid are the same, and no
 *   running pod saw the transaction ids go back.
 * - `--note-only`: notes the current epoch without a reset. Run it after pg_upgrade, before
 *   the pods start: pg_upgrade changes the system identifier and sets timeline 1 but keeps the
 *   transaction ids, so the cursors consumers hold stay valid and a reset would only make them
 *   resync.
 *
 * No embedded PostgreSQL: a reset is for a production database, named explicitly.
 */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const unknown = args.filter((arg) => arg !== '--note-only');
  if (unknown.length > 0) {
    throw new StartupError(`unknown argument ${unknown.join(' ')}: only --note-only`);
  }
  const url = cliDatabaseUrl();
  if (!url) throw new StartupError('DATABASE_URL: required (the primary of the database to reset)');
  const { db } = createDb(url, 1);
  try {
    // On stdout whatever LOG_LEVEL says: the one line is what the operator ran it for.
    const said = await resetFeedByOperator(
      db,
      args.includes('--note-only') ? 'note' : 'reset',
    ).catch((error: unknown) => {
      throw namingUnreachable(error, url);
    });
    process.stdout.write(`${said}\n`);
  } finally {
    await db.destroy();
  }
}

main().catch((error: unknown) => {
  // Defence in depth: no message known to carry a secret, but one from a driver might.
  console.error(redactSecrets(error instanceof Error ? error.message : String(error)));
  process.exit(1);
});
