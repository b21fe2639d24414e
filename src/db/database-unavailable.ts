/**
 * Tells "PostgreSQL cannot be reached or cannot write right now" apart from "this statement
 * failed". The first sends accepted callbacks to the outage spool and makes the query API
 * answer 503 (http/error-handler.ts); the second must fail only its own request or events.
 */

// Socket-level failures reaching the server (refused, reset, unreachable, timed out, DNS), as
// Node reports them (error.code), with no SQLSTATE.
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

// Failures of a new connection itself (Node's `syscall: 'connect'`), counted only there: the
// same codes from a file (a migrations folder missing, a file that cannot be opened) are that
// file's problem, not the database's.
const CONNECT_CODES = new Set([
  // A Unix-socket DATABASE_URL (host=/var/run/postgresql): the socket's file gone while the
  // server is down or restarting, or its listen queue full under a connection storm.
  'ENOENT',
  'EAGAIN',
  // This process or machine out of what a new connection needs: file descriptors (a peer
  // holding connections up to RLIMIT_NOFILE), local ports, socket buffers or memory. Nothing
  // reaches the database until they come back, and it is no fault of the event being written:
  // called `event` (an error without a SQLSTATE), each callback was answered 503 and logged as
  // refused for its data, and a read answered 500.
  'EMFILE',
  'ENFILE',
  'EADDRNOTAVAIL',
  'ENOBUFS',
  'ENOMEM',
]);

// TLS to the server failing: its certificate expired, renewed by another CA, or not naming
// the host, or the server no longer speaking TLS. Nothing reaches the database until an
// operator mends it — an outage like any other (callbacks spooled, reads 503), not the fault of
// the event being written (which would be refused, or dead-lettered at replay).
const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

// Server states in which nothing can be written, whatever the statement:
// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or in
// recovery), 57P05 idle_session_timeout (the server ended a pooled connection left idle longer
// than a role's or database's idle_session_timeout: the connection is gone, a new one works),
// 25006 read_only_sql_transaction (a failover left us on a standby), 53xxx insufficient
// resources (disk full, out of memory, too many connections).
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '57P05', '25006']);

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
  /^The server does not support SSL connections$/i,
  // The reader pool's client-side deadline: its server stopped answering (db/database.ts).
  /^Query read timeout$/,
  // DATABASE_READ_URL leads to a server that does not follow DATABASE_URL's database: no
  // standby, one that fell behind, or another database; or its user may not read what the
  // reads need (db/standby-only.ts).
  /^DATABASE_READ_URL(?: leads to |'s user )/,
];

/**
 * What a connection that could not even be set up fails with (db/database.ts clientOrFailure):
 * a file the connection string names (sslrootcert, sslcert, sslkey) missing or unreadable, read
 * at each new connection. Nothing reaches the database until an operator mends it: an outage
 * like a TLS failure (callbacks spooled, not refused or dead-lettered).
 */
export const CANNOT_SET_UP_CONNECTION = 'cannot set up a database connection';

// The server is up but refuses the service's session, for every statement alike: a rotated
// password or a role made NOLOGIN (class 28), a database renamed or not yet restored (3D000),
// one closed to connections for maintenance (55000 "is not currently accepting connections"),
// or CONNECT revoked (42501 "permission denied for database"). Until an operator mends it
// nothing can be written, like an outage, and it is no fault of the event being written. The
// last two codes also name statement errors, so only the connection's own check counts for
// them: the server function that raised it (`routine`, the same in every language) — a server
// whose lc_messages is not English words the message in its own — or, where a proxy in
// between (PgBouncer) passes on the message without it, the English text.
const REFUSED_SESSION_SQLSTATES = new Set(['3D000']);
const SESSION_CHECK_ROUTINE = 'CheckMyDatabase';
const REFUSED_SESSION_MESSAGES = new Map<string, RegExp>([
  ['55000', /^database ".*" is not currently accepting connections$/],
  ['42501', /^permission denied for database ".*"$/],
]);

/**
 * The server refused the session itself (see above): a wrong role, password or database name,
 * or one closed to connections. A command a person runs says so at once rather than waiting.
 */
export function isSessionRefused(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message, routine } = error as {
    code?: unknown;
    message?: unknown;
    routine?: unknown;
  };
  if (typeof code !== 'string') return false;
  if (/^28[0-9A-Z]{3}$/.test(code) || REFUSED_SESSION_SQLSTATES.has(code)) return true;
  const refusal = REFUSED_SESSION_MESSAGES.get(code);
  if (refusal === undefined) return false;
  return (
    routine === SESSION_CHECK_ROUTINE || (typeof message === 'string' && refusal.test(message))
  );
}

export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  // Node's happy-eyeballs connect reports one failure per address in an AggregateError.
  if (error instanceof AggregateError && error.errors.some(isDatabaseUnavailable)) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code) || TLS_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code)) {
      return true;
    }
    if (CONNECT_CODES.has(code) && (error as { syscall?: unknown }).syscall === 'connect') {
      return true;
    }
    // SQLSTATE class 08: connection exceptions; 53: insufficient resources.
    if (/^(08|53)[0-9A-Z]{3}$/.test(code)) return true;
  }
  if (isSessionRefused(error)) return true;
  const message = (error as { message?: unknown }).message;
  if (typeof message !== 'string') return false;
  return (
    message.startsWith(`${CANNOT_SET_UP_CONNECTION}: `) ||
    CODELESS_MESSAGES.some((pattern) => pattern.test(message))
  );
}
