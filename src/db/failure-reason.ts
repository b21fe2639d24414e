import type { Logger } from '../logger';
import { isDatabaseUnavailable, isSessionRefused } from './database-unavailable';
import { sqlState } from './write-failure';

/**
 * What went wrong with the database, in words an operator acts on, for the log lines of loops
 * that keep retrying (relay, reconciliation, the outage spool). "Cannot reach the database"
 * sends someone at 3 a.m. looking for a network fault; a lock timeout, a cancelled statement
 * or a read-only server after a failover each has another cause and another fix. Built on the
 * classifier every write path uses (database-unavailable.ts), so the words never disagree with
 * what the service does about the error; `code` (a SQLSTATE, or Node's errno for a socket) is
 * what to search for.
 */
export interface DatabaseFailure {
  /**
   * - `unreachable`: no answer (connection refused, reset or lost; DNS; TLS; no answer in time);
   * - `read_only`: the server answers but cannot write (a standby after a failover);
   * - `refused_session`: a wrong user, password or database name, or connections closed to us;
   * - `unavailable`: the server is shutting down, starting up or out of resources;
   * - `statement`: the server is there and refused or cancelled this one statement.
   */
  kind: 'unreachable' | 'read_only' | 'refused_session' | 'unavailable' | 'statement';
  /** One line, ending with the code when there is one; the error's own text is `err`'s. */
  reason: string;
  code?: string;
}

// Statement failures whose cause is known well enough to name it.
const STATEMENT_REASONS: Readonly<Record<string, string>> = {
  '55P03': 'a lock wait timed out (lock_timeout): another session holds a lock',
  '57014': 'a statement was cancelled (statement_timeout, or pg_cancel_backend)',
  '40001': 'a serialization failure (a concurrent transaction)',
  '40P01': 'a deadlock with another session',
  '25P03': 'the transaction was idle too long (idle_in_transaction_session_timeout)',
};

export function describeDatabaseFailure(error: unknown): DatabaseFailure {
  const { kind, reason } = judge(error);
  const code = errorCode(error);
  if (code === undefined) return { kind, reason };
  const label = reportedSqlState(error) ? 'SQLSTATE ' : '';
  return { kind, reason: `${reason} [${label}${code}]`, code };
}

/**
 * The SQLSTATE the server answered with, if it answered. Node's errno codes all begin with E,
 * which no SQLSTATE class does (EPIPE has a SQLSTATE's shape).
 */
export function reportedSqlState(error: unknown): string | undefined {
  const code = sqlState(error);
  return code?.startsWith('E') ? undefined : code;
}

function judge(error: unknown): Omit<DatabaseFailure, 'code'> {
  const sqlstate = sqlState(error);
  if (sqlstate === '25006') {
    return {
      kind: 'read_only',
      reason:
        'the database is read-only (a standby after a failover, or default_transaction_read_only)',
    };
  }
  if (isSessionRefused(error)) {
    return {
      kind: 'refused_session',
      reason: 'the database refused the session (user, password, database name or CONNECT)',
    };
  }
  if (sqlstate && /^(57P0[123]|53...)$/.test(sqlstate)) {
    return {
      kind: 'unavailable',
      reason: sqlstate.startsWith('53')
        ? 'the database is out of resources (connections, disk or memory)'
        : 'the database is shutting down, restarting or in recovery',
    };
  }
  if (isDatabaseUnavailable(error)) {
    return {
      kind: 'unreachable',
      reason: 'cannot reach the database (connection refused, lost or not answering in time)',
    };
  }
  const named = sqlstate && STATEMENT_REASONS[sqlstate];
  if (named) return { kind: 'statement', reason: named };
  return {
    kind: 'statement',
    reason: sqlstate ? 'the database refused a statement' : 'a database call failed',
  };
}

/** A SQLSTATE or Node's errno (ECONNREFUSED, ETIMEDOUT, EIO…), if the error has one. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : undefined;
}

/**
 * The log of a loop that retries its database work until it succeeds: one line when it starts
 * failing and each time the reason changes (a lock timeout becoming a lost connection is news),
 * one when it works again; never one per retry.
 */
export interface FailureLog {
  failed(error: unknown): void;
  succeeded(): void;
  readonly failing: boolean;
}

export function createFailureLog(logger: Logger, subject: string): FailureLog {
  const reasons = createReasonCount();
  return {
    failed(error) {
      const { kind, reason, code } = describeDatabaseFailure(error);
      if (!reasons.failed(reason)) return;
      logger.error({ err: error, kind, code }, `${subject}: ${reason}; retrying`);
    },
    succeeded() {
      if (reasons.succeeded() === undefined) return;
      logger.info(`${subject}: the database works again`);
    },
    get failing() {
      return reasons.failing;
    },
  };
}

/**
 * What a once-per-reason log (FailureLog, and the workers' "not recorded" lines) keeps: the
 * reason of the current run of failures, and how many things it cost since it began. The
 * caller says the words; this says when.
 */
export interface ReasonCount {
  /** A failure costing `count` things; true when its reason is news (none before, or another). */
  failed(reason: string, count?: number): boolean;
  /** The things the run of failures cost, when one was under way (then over); else undefined. */
  succeeded(): number | undefined;
  readonly failing: boolean;
}

export function createReasonCount(): ReasonCount {
  let run: { reason: string; count: number } | null = null;
  return {
    failed(reason, count = 1) {
      if (run?.reason === reason) {
        run.count += count;
        return false;
      }
      run = { reason, count };
      return true;
    },
    succeeded() {
      const cost = run?.count;
      run = null;
      return cost;
    },
    get failing() {
      return run !== null;
    },
  };
}
