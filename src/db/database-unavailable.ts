/**
 * Tells "PostgreSQL cannot be reached or cannot write right now" apart from "this statement
 * failed". The first sends accepted callbacks to the outage spool and makes the query API
 * answer 503 (http/error-handler.ts); the second must fail only its own request or events.
 */

// Socket-level failures reaching the server (refused, reset, unreachable, timed out, DNS).
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// Server states in which nothing can be written, whatever the statement:
// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or in
// recovery), 25006 read_only_sql_transaction (a failover left us on a standby), 53xxx
// insufficient resources (disk full, out of memory, too many connections).
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '25006']);

// node-postgres and Kysely raise these without any code, so only their text identifies them:
// the pool's connect timeout, a socket that closed under a query or before the client was
// ready, and a pool already closed (shutting down: nothing written now is lost, it waits).
const CODELESS_MESSAGES = [
  /^timeout exceeded when trying to connect$/i,
  /^Connection terminated/i,
  /^Client has encountered a connection error and is not queryable$/i,
  /^Client was closed and is not queryable$/i,
  /^Cannot use a pool after calling end on the pool$/i,
  /^driver has already been destroyed$/i,
];

export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  // Node's happy-eyeballs connect reports one failure per address in an AggregateError.
  if (error instanceof AggregateError && error.errors.some(isDatabaseUnavailable)) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code)) return true;
    // SQLSTATE class 08: connection exceptions; class 53: insufficient resources.
    if (/^(08|53)[0-9A-Z]{3}$/.test(code)) return true;
  }
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && CODELESS_MESSAGES.some((pattern) => pattern.test(message));
}
