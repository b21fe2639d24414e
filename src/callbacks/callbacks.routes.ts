import getRawBody from 'raw-body';
import type { Request, RequestHandler, Response } from 'express';
import type { Config } from '../config';
import { AppError, badRequest, forbidden, unauthorized, unavailable } from '../errors';
import { byteBudget } from '../http/byte-budget';
import type { ByteBudget } from '../http/byte-budget';
import { chain } from '../http/chain';
import { originForm } from '../http/origin-form';
import { isUnstorableValue } from '../db/write-failure';
import { maskUrlTokens } from '../http/request-log';
import type { LogBudget } from '../http/log-budget';
import type { AuthFailureBudget } from '../http/rate-limit';
import type { Logger } from '../logger';
import type { EventRecorder } from '../messages/event-recorder';
import type { RecordOutcome } from '../messages/record-events';
import type { StatusEvent } from '../messages/status-event';
import type { Api } from '../messages/statuses';
import { hasTokenShape, tokenExpired, verifyCallbackToken } from './callback-token';
import type { VerifiedToken } from './callback-token';
import { normalizeCxmlCallback, normalizeNativeCallback } from './normalize';
import { parseCallback, storableFields } from './callback-body';
import type { BodyKind, ParsedCallback } from './callback-body';
import type { CallbackOutcome } from './callback-outcome';
import { relayPayloadOf } from './relay-payload';
import { scrubToken } from './token-scrub';
import type { CallbackFields } from './normalize';
import { signedFormMayBeResplit } from './form-resplit';
import { candidateUrlsFor, verifySignature } from './signature';
import type { SignatureFailure } from './signature';

/** DESIGN §2: a callback body is at most 64 KiB (a real one is about 1 KiB). */
export const CALLBACK_BODY_LIMIT_BYTES = 64 * 1024;

/** The 403 of a callback the write refused (record-events.ts), by the write's outcome. */
const WRITE_REFUSALS: Partial<Record<RecordOutcome, { code: string; message: string }>> = {
  refused_token: {
    code: 'token_mismatch',
    message: "The callback token does not belong to this message's send",
  },
  refused_project: {
    code: 'project_mismatch',
    message: "The callback names another project than its message's",
  },
};

/**
 * A body is read before its signature can be checked, so without a bound any client that shows
 * a signature header could hold HTTP_MAX_CONNECTIONS bodies of 64 KiB (4,096: 256 MiB of a
 * 512 MiB pod) by sending all but their last byte (DESIGN §2: memory held by waiting callbacks
 * is bounded in bytes). Real callbacks are about 1 KiB: a body declared no larger than
 * SMALL_CALLBACK_BYTES is always taken (all connections together hold at most 32 MiB of them),
 * and larger ones share CALLBACK_BODY_BYTES_IN_FLIGHT, reserved as declared before a byte is
 * read (a chunked body, which declares no size, reserves what it has read once it is past
 * SMALL_CALLBACK_BYTES). Past it such a body is refused 503 unread (a chunked one: the rest
 * unread), and SignalWire retries it; an attacker who fills it therefore delays only other
 * oversized bodies, never an ordinary callback.
 */
export const SMALL_CALLBACK_BYTES = 8 * 1024;
export const CALLBACK_BODY_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

export interface CallbackDeps {
  config: Config;
  logger: Logger;
  recorder: EventRecorder;
  clock?: () => Date;
  /** Observes every callback's outcome (metrics). */
  onCallback?: (api: Api, status: string, outcome: CallbackOutcome) => void;
  onSignatureFailure?: (reason: SignatureFailure) => void;
  onSignatureVerified?: () => void;
  /** Bytes of large bodies held at once (default CALLBACK_BODY_BYTES_IN_FLIGHT). */
  bodyBytesInFlight?: number;
  /** Refused authentications per client: told of each 401/403, asked before reading a body. */
  authFailures?: AuthFailureBudget;
  /** So many "callback refused" lines a minute per reason; the rest are counted (log-budget.ts). */
  logBudget?: LogBudget;
}

/** What the cheap checks established before the body was read. */
interface Admission {
  body: BodyKind;
  /** The valid, unexpired per-send token that authenticates the callback, if one does. */
  token: VerifiedToken | null;
  /** Whether a signature must verify once the body is read (no token, signing on). */
  needsSignature: boolean;
}

/**
 * The public ingestion routes (DESIGN §2) as ONE request handler: it answers the callback
 * routes and passes every other request on (`next()`). A callback is answered 200 only after
 * its event is durable — duplicates too, so SignalWire stops retrying — and 503 when it cannot
 * be.
 *
 * One handler rather than an Express Router with its routes and body parser: at thousands of
 * callbacks a second on a replica, the router's matching, parameter processing and nested
 * dispatch and body-parser's generic machinery (charset, inflation, type checks) were a large
 * share of the server's CPU per callback, which the routes below need none of (bench:
 * `npm run bench`). The routes mean what Express made of them: case-insensitive, an optional
 * trailing slash, the token one path segment, URL-decoded.
 *
 * Cheapest checks first, so that no request makes the process work before it has shown it
 * could be a real callback: the declared size, the content type and encoding and the presence
 * of credentials (a token is verified here: one HMAC), and for a request without a valid
 * token its client's budget of refused authentications (authFailures), come before the body
 * is even read. The body is then read within its limit. A JSON body's signature covers its raw
 * bytes and is verified before the body is parsed; a form's covers its sorted parameters, so
 * it is parsed first, within its limits (MAX_FORM_PARAMETERS).
 *
 * `before(api)` runs first on every request to a callback path, OPTIONS and a malformed token
 * included (the rate limit). `measure(api)` runs before it on the callbacks only, not on an
 * OPTIONS (the latency metric: its code 200 means a callback made durable, which an OPTIONS
 * answered 200 to anyone is not).
 */
export function callbackEndpoint(
  deps: CallbackDeps & {
    before?: (api: Api) => RequestHandler;
    measure?: (api: Api) => RequestHandler;
  },
): RequestHandler {
  const route = (api: Api, measured: boolean, ...handlers: RequestHandler[]): RequestHandler =>
    chain(
      ...(measured && deps.measure ? [deps.measure(api)] : []),
      ...(deps.before ? [deps.before(api)] : []),
      ...handlers,
    );
  const bodies = byteBudget(deps.bodyBytesInFlight ?? CALLBACK_BODY_BYTES_IN_FLIGHT);
  const callback = (api: Api, readBody: boolean): RequestHandler =>
    route(
      api,
      true,
      decodeToken,
      admit(deps, api),
      ...(readBody ? [readRawBody(deps, api, bodies)] : []),
      (req: Request, res: Response) => handle(deps, api, req, res),
    );
  // The handler of each API and method (a GET callback carries its fields in the query), and
  // OPTIONS, which says which methods the path takes, as Express's router does.
  const routes = Object.fromEntries(
    Object.entries(CALLBACK_METHODS).map(([api, methods]) => [
      api,
      Object.fromEntries([
        ...methods.map((method) => [method, callback(api as Api, method === 'POST')]),
        ['OPTIONS', route(api as Api, false, (_req, res) => answerOptions(res, methods))],
      ]),
    ]),
  ) as Record<Api, Partial<Record<string, RequestHandler>>>;

  return (req, res, next) => {
    const matched = CALLBACK_ROUTE.exec(pathOf(originForm(req.url)));
    if (matched === null) return next();
    const api = matched[1]!.toLowerCase() as Api;
    const handler = routes[api][req.method];
    // Another method on a callback path: not a route (404 further on), as with Express.
    if (handler === undefined) return next();
    req.params = matched[2] === undefined ? {} : { token: matched[2] };
    return handler(req, res, next);
  };
}

/** The token path segment, URL-decoded (as Express decodes a route parameter). */
const decodeToken: RequestHandler = (req, _res, next) => {
  const token = req.params['token'];
  if (typeof token === 'string') {
    try {
      req.params['token'] = decodeURIComponent(token);
    } catch {
      throw badRequest('malformed_path', 'The callback path is not valid URL encoding');
    }
  }
  next();
};

function answerOptions(res: Response, methods: readonly string[]): void {
  const allow = methods.join(', ');
  res.statusCode = 200;
  res.setHeader('Allow', allow);
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.end(allow);
}

/**
 * The methods each API's callback paths take. A cXML Application may be configured to call
 * back with GET and query parameters.
 */
const CALLBACK_METHODS: Readonly<Record<Api, readonly string[]>> = {
  cxml: ['POST', 'GET'],
  native: ['POST'],
};

/** The routes callbackEndpoint answers, as `METHOD /path` in OpenAPI's notation. */
export function callbackRoutes(): string[] {
  return Object.entries(CALLBACK_METHODS).flatMap(([api, methods]) =>
    methods.flatMap((method) => [
      `${method} /callbacks/${api}`,
      `${method} /callbacks/${api}/{token}`,
    ]),
  );
}

/** `/callbacks/cxml`, `/callbacks/native`, each optionally followed by `/:token` and a `/`. */
const CALLBACK_ROUTE = /^\/callbacks\/(cxml|native)(?:\/([^/]+))?\/?$/i;

/** The request target's path (in origin form: see originForm): what is before the query. */
function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * The body as raw bytes (signatures cover it exactly as sent), at most
 * CALLBACK_BODY_LIMIT_BYTES. raw-body (what Express's body parsers read with) enforces the
 * limit while reading and refuses a body cut short; past the limit the rest is not read and
 * the connection is closed after the answer.
 *
 * A body declared larger than SMALL_CALLBACK_BYTES reserves its Content-Length in `bodies`
 * before a byte is read; when that does not fit, 503 with Retry-After and the body is not read
 * (CALLBACK_BODY_BYTES_IN_FLIGHT). A chunked body declares no size: it reserves nothing while
 * it is small, and what it has read once it grows past SMALL_CALLBACK_BYTES (when that does
 * not fit, 503 and the rest is not read). Reservations are held until the answer is sent or
 * the connection is gone.
 */
function readRawBody(deps: CallbackDeps, api: Api, bodies: ByteBudget): RequestHandler {
  return async (req, res, next) => {
    const declared = Number(req.headers['content-length']);
    const chunked = !Number.isInteger(declared);
    if (!chunked && declared > SMALL_CALLBACK_BYTES) reserve(deps, api, res, bodies, declared);
    try {
      const reading = getRawBody(req, {
        length: req.headers['content-length'],
        limit: CALLBACK_BODY_LIMIT_BYTES,
      });
      req.body = chunked
        ? await reserveAsRead(deps, api, req, res, bodies, reading)
        : await reading;
    } catch (error) {
      // Refused for the budget: counted already.
      if (error instanceof AppError) throw error;
      const type = (error as { type?: unknown }).type;
      if (type === 'entity.too.large') {
        deps.onCallback?.(api, 'invalid', 'refused_payload_too_large');
        res.setHeader('Connection', 'close');
        throw new AppError(413, 'payload_too_large', 'The body is larger than 64 KiB');
      }
      // The client went away, or sent less than it declared: the error handler words it.
      const aborted = type === 'request.aborted';
      deps.onCallback?.(
        api,
        'invalid',
        aborted ? 'refused_request_aborted' : 'refused_malformed_body',
      );
      throw error;
    }
    next();
  };
}

/**
 * A chunked body as `reading` (raw-body) reads it, its bytes reserved in `bodies` as they
 * arrive once past SMALL_CALLBACK_BYTES: reserved up front at the limit, as a declared body
 * is, a few hundred stalled chunked requests that anyone can send (a signature header is all
 * it takes) would hold the budget, and every ordinary chunked callback would be refused. When
 * the budget is full, 503 and the rest is not read. What was reserved is released once, when
 * the answer is sent or the connection is gone.
 */
function reserveAsRead(
  deps: CallbackDeps,
  api: Api,
  req: Request,
  res: Response,
  bodies: ByteBudget,
  reading: Promise<Buffer>,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let received = 0;
    let held = 0;
    let done = false;
    const finish = () => {
      done = true;
      req.removeListener('data', count);
    };
    // Added after raw-body's own listener: a chunk past the limit is its 413 first.
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (done || received <= SMALL_CALLBACK_BYTES || received > CALLBACK_BODY_LIMIT_BYTES) return;
      const more = received - held;
      if (!bodies.fits(held, more)) {
        finish();
        // As raw-body halts a body past its limit: nothing more is read.
        req.unpipe();
        req.pause();
        reject(budgetFull(deps, api, res));
        return;
      }
      bodies.take(more);
      held += more;
    };
    req.on('data', count);
    res.once('close', () => {
      finish();
      bodies.give(held);
      held = 0;
    });
    reading.then(
      (body) => {
        finish();
        resolve(body);
      },
      (error: unknown) => {
        finish();
        reject(error);
      },
    );
  });
}

/** Holds `size` bytes of `bodies` until the answer is gone, or refuses the body 503. */
function reserve(
  deps: CallbackDeps,
  api: Api,
  res: Response,
  bodies: ByteBudget,
  size: number,
): void {
  if (!bodies.fits(0, size)) throw budgetFull(deps, api, res);
  bodies.take(size);
  res.once('close', () => bodies.give(size));
}

/** The 503 for a large body that does not fit CALLBACK_BODY_BYTES_IN_FLIGHT, counted. */
function budgetFull(deps: CallbackDeps, api: Api, res: Response): AppError {
  deps.onCallback?.(api, 'invalid', 'refused_unavailable');
  res.setHeader('Connection', 'close');
  return unavailable('Too many large callbacks are being received at once; retry later', 1);
}

/** Size, content type and credentials: everything that can be refused before reading. */
function admit(deps: CallbackDeps, api: Api): RequestHandler {
  return (req, res, next) => {
    const body = req.method === 'GET' ? 'form' : admitBody(deps, api, req, res);
    const admission = { body, ...admitCredentials(deps, api, req, res) };
    (res.locals as { admission?: Admission }).admission = admission;
    next();
  };
}

function admitBody(deps: CallbackDeps, api: Api, req: Request, res: Response): BodyKind {
  const length = Number(req.headers['content-length']);
  if (length > CALLBACK_BODY_LIMIT_BYTES) {
    deps.onCallback?.(api, 'invalid', 'refused_payload_too_large');
    // The body is not read: the connection cannot carry another request after this one.
    res.setHeader('Connection', 'close');
    throw new AppError(413, 'payload_too_large', 'The body is larger than 64 KiB');
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    // SignalWire does not compress callbacks; a compressed body is not one of its callbacks.
    deps.onCallback?.(api, 'invalid', 'refused_unsupported_encoding');
    throw new AppError(415, 'unsupported_encoding', 'Content-Encoding must be identity');
  }
  const type = mediaType(req);
  if (type === 'application/json' || JSON_SUFFIX.test(type)) return 'json';
  if (type === 'application/x-www-form-urlencoded' && api === 'cxml') return 'form';
  deps.onCallback?.(api, 'invalid', 'refused_unsupported_media_type');
  const expected =
    api === 'cxml' ? 'application/x-www-form-urlencoded or application/json' : 'application/json';
  throw new AppError(415, 'unsupported_media_type', `Content-Type must be ${expected}`);
}

/**
 * Either a valid per-send token or a signature to verify (DESIGN §2 "Callback
 * authentication"). A token path with an invalid or expired token still verifies by its
 * signature when it carries one (the URL SignalWire signed is the token URL): a token minted
 * under a secret since retired, or past its TTL.
 *
 * But only a segment shaped like a token may: the form scheme signs the URL and the sorted
 * parameters with no separator between them, so a genuine signature of a form POST to
 * `…/callbacks/cxml/<token>` also verifies a GET to that URL followed by `AccountSid<sid>Body`
 * and the message's text — text a sender chooses, which can go on with
 * `?MessageSid=<any message>&MessageStatus=failed`. Such a target's segment is the token with
 * the signed parameters glued to it, never a token's shape (nor is a bare callback URL's
 * `AccountSid…` glued after its trailing slash), so it is refused here before any signature
 * is looked at: no URL this service hands out has such a segment. (With
 * ALLOW_UNSIGNED_CALLBACKS nothing is checked, so there is nothing to forge.)
 */
function admitCredentials(
  deps: CallbackDeps,
  api: Api,
  req: Request,
  res: Response,
): Omit<Admission, 'body'> {
  const { config } = deps;
  const given = req.params['token'];
  if (typeof given === 'string') {
    const token = verifyCallbackToken(config.callbackTokenSecrets, given);
    const expired = token !== null && tokenExpired(token, config.callbackTokenTtlDays, now(deps));
    if (token && !expired) {
      deps.authFailures?.authenticated(req);
      return { token, needsSignature: false };
    }
    admitUnauthenticated(deps, req, res);
    if (config.allowUnsignedCallbacks) return { token: null, needsSignature: false };
    if (hasSignature(req) && hasTokenShape(given)) return { token: null, needsSignature: true };
    throw refuse(deps, api, req, expired ? 'token_expired' : 'bad_token');
  }
  admitUnauthenticated(deps, req, res);
  if (config.allowUnsignedCallbacks) return { token: null, needsSignature: false };
  if (hasSignature(req)) return { token: null, needsSignature: true };
  throw refuse(deps, api, req, 'missing');
}

/**
 * A request without a valid per-send token, from a client past its refused authentications:
 * 429 before the body is read, and the connection closed (its body is never read).
 */
function admitUnauthenticated(deps: CallbackDeps, req: Request, res: Response): void {
  const refusal = deps.authFailures?.refusal(req);
  if (!refusal) return;
  res.setHeader('Connection', 'close');
  throw refusal;
}

function hasSignature(req: Request): boolean {
  const { headers } = req;
  return (
    !!headers['x-signalwire-signature'] ||
    !!headers['x-twilio-signature'] ||
    !!headers['x-signalwire-sha256-signature']
  );
}

async function handle(deps: CallbackDeps, api: Api, req: Request, res: Response): Promise<void> {
  const { config } = deps;
  const admission = (res.locals as { admission: Admission }).admission;
  // Every JSON scheme (A, SHA256, B+bodySHA256) covers the raw body: a JSON body is parsed
  // only once its signature verified, so a forged one costs HMACs, never a parse (JSON.parse
  // grows faster than the body with its distinct keys).
  const signedJson = admission.needsSignature && admission.body === 'json';
  let keyIndex = signedJson ? verifyOrRefuse(deps, api, req, 'json', []) : undefined;
  let parsed: ParsedCallback;
  try {
    parsed = parseCallback(admission.body, req);
  } catch (error) {
    // refused_malformed_body, refused_too_many_parameters, …: bounded by the AppError codes.
    const code = error instanceof AppError ? error.code : 'malformed_body';
    deps.onCallback?.(api, 'invalid', `refused_${code}`);
    throw error;
  }
  // A form's signature covers its sorted parameters: verified once they are parsed.
  if (admission.needsSignature && !signedJson) {
    keyIndex = verifyOrRefuse(deps, api, req, admission.body, parsed.formParams);
  }
  if (admission.token && config.signingKeys.length > 1 && hasSignature(req)) {
    keyIndex = signedWith(deps, req, admission.body, parsed.formParams);
  }
  let fields: CallbackFields;
  try {
    fields = storableFields(api, parsed.fields);
  } catch (error) {
    deps.onCallback?.(api, 'invalid', 'refused_invalid');
    throw error;
  }

  const options = { receivedAt: now(deps), storeBody: config.storeBody };
  let event: StatusEvent;
  try {
    event =
      api === 'cxml'
        ? normalizeCxmlCallback(fields, options)
        : normalizeNativeCallback(fields, options);
  } catch (error) {
    deps.onCallback?.(api, 'invalid', 'refused_invalid');
    throw error;
  }
  const { token } = admission;
  if (token) {
    // Checked against the message's binding in the write's own transaction (record-events).
    event.tokenRef = token.ref;
    if (token.mintedAt === null) event.tokenLegacy = true;
  }
  if (keyIndex !== undefined) event.verifiedKeyIndex = keyIndex;
  // Relayed as received if the message has a client callback (DESIGN §10; src/relay).
  event.relay = relayPayloadOf(req, config.signingKeys, event.verifiedKeyIndex);
  // Every token path, not only one whose token verified: a token past its TTL, or minted under
  // a retired secret, came by its signature instead, and is no less the caller's secret. Only a
  // token's shape, though: with ALLOW_UNSIGNED_CALLBACKS any segment is let in (`…/native/1`),
  // and masking it would mangle the payload.
  const pathToken = req.params['token'];
  if (typeof pathToken === 'string' && hasTokenShape(pathToken)) {
    scrubToken(event, pathToken, req);
  }

  let outcome: RecordOutcome | undefined = keyProjectRefusal(config, admission, keyIndex, event);
  try {
    outcome ??= await deps.recorder.record(event);
  } catch (error) {
    if (isUnstorableValue(error)) {
      // PostgreSQL refuses one of this callback's values, and would on every retry: the
      // request is malformed, not the service unavailable (a 503 would be retried in vain).
      deps.onCallback?.(api, event.status, 'refused_invalid');
      deps.logger.warn(
        { err: error, request_id: req.id, message_id: event.messageId },
        'callback refused: the database cannot store one of its values',
      );
      throw badRequest('invalid_field', 'A field of this callback cannot be stored');
    }
    deps.onCallback?.(api, event.status, 'refused_unavailable');
    if (error instanceof AppError) throw error;
    deps.logger.error({ err: error, request_id: req.id }, 'callback could not be made durable');
    throw unavailable('The event could not be stored; retry later', 2);
  }
  deps.onCallback?.(api, event.status, outcome);
  const refusal = WRITE_REFUSALS[outcome];
  if (refusal) {
    deps.authFailures?.refused(req);
    deps.logger.warn(
      { request_id: req.id, reason: refusal.code, message_id: event.messageId },
      'callback refused',
    );
    throw forbidden(refusal.code, refusal.message);
  }

  // Plain Node writes: Express's send() would parse and rebuild the content type each time.
  res.statusCode = 200;
  if (api === 'cxml') {
    res.setHeader('Content-Type', 'text/xml; charset=utf-8');
    res.end('<Response/>');
  } else {
    res.end();
  }
}

/**
 * A callback that came by its signature under a key bound to its project
 * (`project_id:signing_key` in SIGNALWIRE_SIGNING_KEYS) speaks for that project only: one that
 * names another is refused as `project_mismatch`, before anything is stored; one that names none
 * is taken to name the key's, so the write's own check holds it to its message's project
 * (record-events refusedProjects). Otherwise one project whose key is listed could sign a
 * callback about another project's message.
 */
function keyProjectRefusal(
  config: Config,
  admission: Admission,
  keyIndex: number | undefined,
  event: StatusEvent,
): 'refused_project' | undefined {
  if (!admission.needsSignature || keyIndex === undefined) return undefined;
  const project = config.signingKeyProjects?.[keyIndex] ?? null;
  if (project === null) return undefined;
  if (event.projectId === null) event.projectId = project;
  // Bound projects are lower case (config.ts), as SignalWire writes them.
  return event.projectId.toLowerCase() === project ? undefined : 'refused_project';
}

function now(deps: CallbackDeps): Date {
  return (deps.clock ?? (() => new Date()))();
}

const JSON_SUFFIX = /^application\/[^/]+\+json$/;

/**
 * The body's media type, lower case and without parameters; '' without a body. What
 * `req.is()` answers, without parsing the header again for every type asked about.
 */
function mediaType(req: Request): string {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;
  const header = req.headers['content-type'];
  if (!hasBody || header === undefined) return '';
  const semicolon = header.indexOf(';');
  return (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase();
}

/**
 * The key a callback that came by its per-send token was signed with, when its signature
 * verifies under one of several keys (undefined otherwise: never a refusal, the token already
 * authenticated it). Several projects each sign with their own key: the relay to the app must
 * be signed with the key SignalWire signed with, the one the app validates with (DESIGN §10),
 * not the first listed. With one key there is nothing to choose.
 */
function signedWith(
  deps: CallbackDeps,
  req: Request,
  body: BodyKind,
  formParams: ParsedCallback['formParams'],
): number | undefined {
  const result = signatureVerdict(deps, req, body, formParams);
  return result.ok ? result.keyIndex : undefined;
}

/** The request's signature checked against every signing key. */
function signatureVerdict(
  deps: CallbackDeps,
  req: Request,
  body: BodyKind,
  formParams: ParsedCallback['formParams'],
): ReturnType<typeof verifySignature> {
  return verifySignature(deps.config.signingKeys, deps.config.publicBaseUrl, {
    headers: req.headers,
    originalUrl: originForm(req.originalUrl),
    body,
    rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
    formParams,
  });
}

/** The signature's verdict: the index of the key that verified, or a 403 (or 401). */
function verifyOrRefuse(
  deps: CallbackDeps,
  api: Api,
  req: Request,
  body: BodyKind,
  formParams: ParsedCallback['formParams'],
): number {
  const target = originForm(req.originalUrl);
  const result = signatureVerdict(deps, req, body, formParams);
  // A form's signature (scheme B) covers its fields with no separators: it also verifies
  // another signed callback cut into other fields, unless the names that pick a message sit
  // where only a genuine callback puts them (form-resplit.ts).
  if (
    result.ok &&
    body === 'form' &&
    signedFormMayBeResplit(target, req.method === 'GET' ? null : formParams)
  ) {
    deps.onSignatureFailure?.('ambiguous_parameters');
    throw refuse(deps, api, req, 'ambiguous_parameters', [result.url]);
  }
  if (result.ok) {
    deps.onSignatureVerified?.();
    deps.authFailures?.authenticated(req);
    return result.keyIndex;
  }
  if (result.reason !== 'missing') deps.onSignatureFailure?.(result.reason);
  throw refuse(deps, api, req, result.reason, result.candidateUrls);
}

type RefusalReason = SignatureFailure | 'bad_token' | 'token_expired';

/** Counts, logs and builds the answer to a callback whose credentials fail. */
function refuse(
  deps: CallbackDeps,
  api: Api,
  req: Request,
  reason: RefusalReason,
  candidateUrls: string[] = candidateUrlsFor(
    deps.config.publicBaseUrl,
    originForm(req.originalUrl),
  ),
): AppError {
  deps.onCallback?.(api, 'unauthenticated', `refused_${reason}`);
  deps.authFailures?.refused(req);
  if (deps.logBudget?.allows(`callback refused: ${reason}`) ?? true) {
    deps.logger.warn(
      {
        request_id: req.id,
        reason,
        // What was tried helps fix a PUBLIC_BASE_URL mismatch; tokens are masked, keys never logged.
        candidate_urls: candidateUrls.map(maskUrlToken),
      },
      'callback refused',
    );
  }
  if (reason === 'missing') return unauthorized('Missing X-SignalWire-Signature or callback token');
  if (reason === 'bad_token') return forbidden('invalid_token', 'The callback token is not valid');
  if (reason === 'token_expired') {
    return forbidden('token_expired', 'The callback token has expired');
  }
  if (reason === 'ambiguous_parameters') {
    return forbidden(
      'ambiguous_parameters',
      'The signed parameters are ambiguous: the signature also covers them split otherwise',
    );
  }
  return forbidden('invalid_signature', 'The signature does not verify');
}

/** The URL as it was checked, with its token masked and its query left out. */
function maskUrlToken(url: string): string {
  const queryAt = url.indexOf('?');
  return queryAt === -1 ? maskUrlTokens(url) : `${maskUrlTokens(url.slice(0, queryAt))}?…`;
}
