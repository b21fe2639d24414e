import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { ZodError } from 'zod';
import { isDatabaseUnavailable } from '../db/database-unavailable';
import { sqlState } from '../db/write-failure';
import { AppError, unavailable } from '../errors';
import type { Logger } from '../logger';
import { loggedPath } from './request-log';

interface ErrorBody {
  error: { code: string; message: string; details?: unknown; request_id: string };
}

// body-parser's error types, mapped to this service's codes; their 4xx statuses are kept.
const BODY_PARSER_CODES: Readonly<Record<string, string>> = {
  'entity.too.large': 'payload_too_large',
  'entity.parse.failed': 'malformed_body',
  'entity.verify.failed': 'malformed_body',
  'request.aborted': 'request_aborted',
  'request.size.invalid': 'malformed_body',
  'encoding.unsupported': 'unsupported_encoding',
  'charset.unsupported': 'unsupported_charset',
  'parameters.too.many': 'payload_too_large',
  'stream.encoding.set': 'malformed_body',
};

// A query that could not get its answer right now, though nothing is wrong with it: statement
// timeout, lock timeout, serialization failure, deadlock.
const RETRYABLE_SQLSTATES = new Set(['57014', '55P03', '40001', '40P01']);

// Text PostgreSQL cannot hold (a NUL character; a character the database's encoding lacks):
// the request's own values, refused by the database where no schema caught them first.
const UNSTORABLE_TEXT_SQLSTATES = new Set(['22021', '22P05']);

/**
 * The one error middleware: every error becomes `{ error: { code, message, request_id } }`.
 * While PostgreSQL is unreachable (or cannot answer in time), any route answers 503 with
 * Retry-After instead of a 500: the client did nothing wrong and should simply retry.
 */
export function errorHandler(
  logger: Logger,
  onServerError?: (status: number, req: Request) => void,
): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const databaseDown = databaseUnavailable(err);
    const { status, body, headers } = describe(databaseDown ?? err, req.id);
    if (databaseDown) {
      logger.warn(
        { request_id: req.id, method: req.method, cause: (err as Error).message },
        'database unavailable: answered 503',
      );
    } else if (status >= 500 && status !== 503) {
      logger.error({ err, request_id: req.id, method: req.method }, 'unhandled error');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (status >= 500) onServerError?.(status, req);
    if (headers) res.set(headers);
    res.status(status).json(body);
  };
}

function databaseUnavailable(err: unknown): AppError | undefined {
  // Errors that carry an HTTP status are the request's (body-parser's ECONNABORTED is a client
  // that went away, not the database).
  if (err instanceof AppError || typeof (err as { status?: unknown })?.status === 'number') {
    return undefined;
  }
  const code = sqlState(err);
  if (!isDatabaseUnavailable(err) && !(code && RETRYABLE_SQLSTATES.has(code))) return undefined;
  return unavailable('The database is unavailable; retry later', 2);
}

export function notFoundHandler(): RequestHandler {
  return (req, _res, next) => {
    // The path as the request log writes it: a callback token masked (an answer can be kept by
    // whatever sits in front, as a log line can) and at most 256 characters of a 16 KiB target.
    next(new AppError(404, 'not_found', `No route for ${req.method} ${loggedPath(req.path)}`));
  };
}

function describe(
  err: unknown,
  requestId: string,
): { status: number; body: ErrorBody; headers?: Readonly<Record<string, string>> } {
  const body = (code: string, message: string, details?: unknown): ErrorBody => ({
    error: { code, message, ...(details !== undefined && { details }), request_id: requestId },
  });
  if (err instanceof AppError) {
    return {
      status: err.status,
      body: body(err.code, err.message, err.details),
      headers: err.headers,
    };
  }
  if (err instanceof ZodError) {
    const details = err.issues.map((issue) => ({
      path: issue.path.join('.'),
      message: issue.message,
    }));
    return { status: 400, body: body('invalid_request', 'The request is invalid', details) };
  }
  const parserError = err as { type?: unknown; status?: unknown; expose?: unknown };
  if (
    typeof parserError.status === 'number' &&
    parserError.status >= 400 &&
    parserError.status < 500
  ) {
    const type = typeof parserError.type === 'string' ? parserError.type : '';
    const code = BODY_PARSER_CODES[type] ?? 'bad_request';
    const message = parserError.expose && err instanceof Error ? err.message : 'Bad request';
    return { status: parserError.status, body: body(code, message) };
  }
  const code = sqlState(err);
  if (code && UNSTORABLE_TEXT_SQLSTATES.has(code)) {
    return {
      status: 400,
      body: body('invalid_request', 'The request holds text the database cannot store'),
    };
  }
  return { status: 500, body: body('internal', 'Internal server error') };
}
