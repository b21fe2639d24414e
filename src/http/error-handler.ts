import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ZodError } from 'zod';
import { AppError } from '../errors';
import type { Logger } from '../logger';

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

/** The one error middleware: every error becomes `{ error: { code, message, request_id } }`. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const { status, body, headers } = describe(err, req.id);
    if (status >= 500 && status !== 503) {
      logger.error({ err, request_id: req.id, method: req.method }, 'unhandled error');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (headers) res.set(headers);
    res.status(status).json(body);
  };
}

export function notFoundHandler(): RequestHandler {
  return (req, _res, next) => {
    next(new AppError(404, 'not_found', `No route for ${req.method} ${req.path}`));
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
  return { status: 500, body: body('internal', 'Internal server error') };
}
