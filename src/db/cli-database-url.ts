import { databaseUrlProblem, envValue } from '../config';
import { StartupError } from '../process/startup-error';
import { isDatabaseUnavailable } from './database-unavailable';
import { databaseAt } from './migrate';

/**
 * DATABASE_URL as the command-line tools read it (migrate, spool, stats:rebuild): they need
 * nothing else of the service's configuration, so a migration Job carries no unrelated secrets.
 * Undefined: the local embedded PostgreSQL, which production refuses. A value node-postgres
 * cannot read is refused here, by name, as the service refuses it at start.
 */
export function cliDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  // Read as the service reads every variable (envValue): empty is unset, white space around a
  // value dropped — a stray space would end up in the database's name, and `production ` is
  // production to the service too. A blank one is refused, as the service refuses it.
  const url = envValue(env, 'DATABASE_URL');
  if (url === undefined && envValue(env, 'NODE_ENV') === 'production') {
    throw new StartupError('DATABASE_URL: required when NODE_ENV=production');
  }
  const problem = url === undefined ? undefined : databaseUrlProblem(url);
  if (problem) throw new StartupError(`DATABASE_URL: ${problem}`);
  return url;
}

/**
 * A command's failure as the operator reads it: a database it cannot reach said as
 * `npm run migrate` says it — DATABASE_URL, and the host and port it named (never the
 * userinfo) — rather than the driver's bare `connect ECONNREFUSED 10.0.0.7:5432`, which names
 * neither the variable to check nor, for a host name, the host. Anything else as it came.
 */
export function namingUnreachable(error: unknown, url: string | undefined): unknown {
  if (!url || !isDatabaseUnavailable(error)) return error;
  return new StartupError(
    `DATABASE_URL: cannot reach ${databaseAt(url)} (${error instanceof Error ? error.message : String(error)})`,
    { cause: error },
  );
}
