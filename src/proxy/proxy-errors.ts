import type { Api } from '../messages/statuses';
import { COMPAT_CODES, compatError, nativeError } from '../signalwire/send-rules';
import type { ApiFailure, CompatErrorBody, NativeErrorBody } from '../signalwire/send-rules';

/**
 * The proxy's own refusals, in the error shape of the API the caller spoke (DESIGN §5), so a
 * SignalWire client handles them like SignalWire's: the compatibility SDK turns a
 * `{ code, message, more_info, status }` body into its RestException, a native client reads
 * `errors[]`. Validation failures come from send-rules.ts; these are the rest.
 */

export type ProxyFailure = ApiFailure<CompatErrorBody | NativeErrorBody>;

export interface ProxyErrors {
  /** No usable Basic credentials, or (compatibility) credentials of another account. */
  unauthenticated(message: string): ProxyFailure;
  /** Authenticated, but the project is not in SIGNALWIRE_PROJECT_IDS: no open relay. */
  projectNotAllowed(projectId: string): ProxyFailure;
  /** The body cannot be read: malformed (400), too large (413), wrong type (415). */
  badBody(status: number, message: string): ProxyFailure;
  timeout(): ProxyFailure;
  unreachable(): ProxyFailure;
  internal(): ProxyFailure;
}

const C = COMPAT_CODES;

const TIMEOUT_MESSAGE = 'SignalWire did not answer in time; the message may still have been sent';
const UNREACHABLE_MESSAGE = 'SignalWire could not be reached; the message was not sent';

const compat: ProxyErrors = {
  unauthenticated: (message) => compatError(401, C.authentication, message),
  projectNotAllowed: (projectId) =>
    compatError(403, C.accessDenied, `Project ${projectId} may not send through this service`),
  badBody: (status, message) => compatError(status, C.invalidArgument, message),
  timeout: () => compatError(504, C.serviceUnavailable, TIMEOUT_MESSAGE),
  unreachable: () => compatError(502, C.serviceUnavailable, UNREACHABLE_MESSAGE),
  internal: () => compatError(500, C.internalError, 'Internal error'),
};

// The native types and codes follow SignalWire's REST catalogue style; the simulator answers
// 401 and unreadable bodies with the same ones.
const native: ProxyErrors = {
  unauthenticated: () => nativeError(401, 'authentication_error', 'unauthorized', 'Unauthorized'),
  projectNotAllowed: (projectId) =>
    nativeError(
      403,
      'authorization_error',
      'forbidden',
      `Project ${projectId} may not send through this service`,
    ),
  badBody: (status, message) =>
    nativeError(status, 'invalid_request_error', 'invalid_parameter', message),
  timeout: () => nativeError(504, 'api_error', 'upstream_timeout', TIMEOUT_MESSAGE),
  unreachable: () => nativeError(502, 'api_error', 'upstream_unreachable', UNREACHABLE_MESSAGE),
  internal: () => nativeError(500, 'api_error', 'internal_error', 'Internal error'),
};

export function proxyErrors(api: Api): ProxyErrors {
  return api === 'cxml' ? compat : native;
}
