/**
 * The one error class. Anything thrown that is not an AppError (nor a recognised library
 * error, see http/error-handler.ts) is a bug and becomes a generic 500.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    /** Extra response headers, e.g. Retry-After on a 503. */
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const badRequest = (code: string, message: string, details?: unknown): AppError =>
  new AppError(400, code, message, details);

export const unauthorized = (message = 'Missing or invalid credentials'): AppError =>
  new AppError(401, 'unauthorized', message);

export const forbidden = (code: string, message: string): AppError =>
  new AppError(403, code, message);

export const notFound = (what: string, id: string): AppError =>
  new AppError(404, 'not_found', `${what} ${id} not found`);

export const unavailable = (message: string, retryAfterSeconds = 1): AppError =>
  new AppError(503, 'unavailable', message, undefined, {
    'Retry-After': String(retryAfterSeconds),
  });
