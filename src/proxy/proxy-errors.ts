import type { Api } from '../messages/statuses';
import { COMPAT_CODES, compatError, nativeError } from '../signalwire/send-rules';
import type { ApiFailure, CompatErrorBody, NativeErrorBody } from '../signalwire/send-rules';
import type { UpstreamFailure } from './signalwire-client';
import { parameterName } from './upstream-target';

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
  /**
   * A create whose query string names where its callbacks go (proxy.routes.ts): the field
   * belongs in the body, where the proxy reads and replaces it.
   */
  fieldInQuery(field: string): ProxyFailure;
  /**
   * A form naming such a field with brackets (`StatusCallback[]`), which a lenient server reads
   * as the field itself, beside the proxy's own.
   */
  fieldBracketed(name: string): ProxyFailure;
  /**
   * A JSON body holding a number the proxy would change by re-serialising it (request-body.ts
   * inexactNumber); `field` is where it is (`ref`, `meta.ids[2]`).
   */
  inexactNumber(field: string, message: string): ProxyFailure;
  /** A request that could create a message upstream without the service's status callback. */
  notACreateRoute(): ProxyFailure;
  /** A path that could reach beyond the API prefix it came in under (upstream-target.ts). */
  outsideApi(): ProxyFailure;
  /**
   * No answer from SignalWire (DESIGN §5: timeout 504, unreachable 502). Only a request that
   * never left is "not sent"; once it may have been written the caller must not assume it
   * failed (a retry could send the message twice).
   */
  upstream(failure: UpstreamFailure, subject: UpstreamSubject): ProxyFailure;
  /**
   * This replica is shutting down and could not carry a send through SignalWire's answer
   * before its connections are cut: not sent (503, with Retry-After), so the retry is safe.
   */
  shuttingDown(): ProxyFailure;
  /** Too many request bodies held at once (proxy-http.ts PROXY_BODY_BYTES_IN_FLIGHT): not sent. */
  busy(): ProxyFailure;
  internal(): ProxyFailure;
}

/** A create (`send`) or a call passed through (`request`): what the messages speak of. */
export type UpstreamSubject = 'send' | 'request';

const C = COMPAT_CODES;

const UPSTREAM_STATUS: Record<UpstreamFailure, number> = {
  unreachable: 502,
  timeout: 504,
  interrupted: 502,
};

const UPSTREAM_MESSAGES: Record<UpstreamSubject, Record<UpstreamFailure, string>> = {
  send: {
    unreachable: 'SignalWire could not be reached; the message was not sent',
    timeout: 'SignalWire did not answer in time; the message may still have been sent',
    interrupted:
      'The connection to SignalWire failed before its answer; the outcome is unknown and the message may have been sent',
  },
  request: {
    unreachable: 'SignalWire could not be reached; the request was not sent',
    timeout: 'SignalWire did not answer in time; the request may still have been carried out',
    interrupted:
      'The connection to SignalWire failed before its answer; the outcome of the request is unknown',
  },
};

const NATIVE_UPSTREAM_CODES: Record<UpstreamFailure, string> = {
  unreachable: 'upstream_unreachable',
  timeout: 'upstream_timeout',
  interrupted: 'upstream_outcome_unknown',
};

const SHUTTING_DOWN =
  'This replica of the service is shutting down; the message was not sent: send it again';

const BUSY =
  'This replica of the service holds too many calls to SignalWire and request bodies at once; the request was not sent: send it again';

const NOT_A_CREATE_ROUTE =
  'Messages are created through this service at …/Accounts/{AccountSid}/Messages(.json) and /api/messaging/messages only: this request would reach SignalWire without the service’s status callback';

const OUTSIDE_API =
  'The path has a dot segment (`.` or `..`, also percent-encoded): no SignalWire resource is named so, and it is not passed on';

const inQuery = (field: string) =>
  `The '${field}' parameter must be sent in the request body, not in the query string`;
const bracketed = (name: string) =>
  `The '${name}' parameter is not accepted: give ${parameterName(name)} without brackets`;

/** Each field's own code; the Application's is SignalWire's "invalid ApplicationSid". */
const COMPAT_FIELD_CODES: Record<string, number> = {
  StatusCallback: C.invalidStatusCallback,
  ApplicationSid: C.invalidApplicationSid,
};

const compat: ProxyErrors = {
  unauthenticated: (message) => compatError(401, C.authentication, message),
  projectNotAllowed: (projectId) =>
    compatError(
      403,
      C.accessDenied,
      `Project ${projectId} may not reach SignalWire through this service`,
    ),
  badBody: (status, message) => compatError(status, C.invalidArgument, message),
  fieldInQuery: (field) =>
    compatError(400, COMPAT_FIELD_CODES[field] ?? C.invalidArgument, inQuery(field)),
  fieldBracketed: (name) =>
    compatError(400, COMPAT_FIELD_CODES[parameterName(name)] ?? C.invalidArgument, bracketed(name)),
  inexactNumber: (_field, message) => compatError(400, C.invalidArgument, message),
  notACreateRoute: () => compatError(404, C.notFound, NOT_A_CREATE_ROUTE),
  outsideApi: () => compatError(404, C.notFound, OUTSIDE_API),
  upstream: (failure, subject) =>
    compatError(
      UPSTREAM_STATUS[failure],
      C.serviceUnavailable,
      UPSTREAM_MESSAGES[subject][failure],
    ),
  shuttingDown: () => compatError(503, C.serviceUnavailable, SHUTTING_DOWN),
  busy: () => compatError(503, C.serviceUnavailable, BUSY),
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
      `Project ${projectId} may not reach SignalWire through this service`,
    ),
  badBody: (status, message) =>
    nativeError(status, 'invalid_request_error', 'invalid_parameter', message),
  fieldInQuery: (field) =>
    nativeError(422, 'validation_error', 'invalid_parameter', inQuery(field), field),
  // Native bodies are JSON, never a form: kept for the interface's sake.
  fieldBracketed: (name) =>
    nativeError(422, 'validation_error', 'invalid_parameter', bracketed(name), name),
  inexactNumber: (field, message) =>
    nativeError(422, 'validation_error', 'invalid_parameter', message, field),
  notACreateRoute: () => nativeError(404, 'invalid_request_error', 'not_found', NOT_A_CREATE_ROUTE),
  outsideApi: () => nativeError(404, 'invalid_request_error', 'not_found', OUTSIDE_API),
  upstream: (failure, subject) =>
    nativeError(
      UPSTREAM_STATUS[failure],
      'api_error',
      NATIVE_UPSTREAM_CODES[failure],
      UPSTREAM_MESSAGES[subject][failure],
    ),
  shuttingDown: () => nativeError(503, 'api_error', 'shutting_down', SHUTTING_DOWN),
  busy: () => nativeError(503, 'api_error', 'busy', BUSY),
  internal: () => nativeError(500, 'api_error', 'internal_error', 'Internal error'),
};

export function proxyErrors(api: Api): ProxyErrors {
  return api === 'cxml' ? compat : native;
}
