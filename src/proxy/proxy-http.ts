import express from 'express';
import type { Request, RequestHandler, Response } from 'express';
import type { Config } from '../config';
import { byteBudget } from '../http/byte-budget';
import { parseBasicAuth } from '../signalwire/basic-auth';
import type { ProxyErrors, ProxyFailure } from './proxy-errors';

/**
 * What both kinds of proxy route — the creates and the calls passed through — do at the HTTP
 * edge, the same way: the cheap checks before the body is read (DESIGN §2 applies to both
 * listeners), the body within one limit, the caller's headers that go upstream, and refusals
 * in the API's own shape.
 */

/**
 * A create request is a few fields (a 1600-character body, 8 media URLs); no other call of
 * the messaging APIs takes more. 256 KiB leaves room for any real one and stops a client
 * from streaming megabytes into memory.
 */
export const PROXY_BODY_LIMIT = '256kb';
const PROXY_BODY_LIMIT_BYTES = 256 * 1024;

/** Answers 413 when the declared size is over the limit; the body is then never read. */
export function refuseDeclaredTooLarge(req: Request, res: Response, errors: ProxyErrors): boolean {
  if (!(Number(req.headers['content-length']) > PROXY_BODY_LIMIT_BYTES)) return false;
  // The body is not read: the connection cannot carry another request after this one.
  res.setHeader('Connection', 'close');
  fail(res, errors.badBody(413, `The request body is larger than ${PROXY_BODY_LIMIT}`));
  return true;
}

export type CallerCheck =
  | {
      ok: true;
      /** The caller's project in lower case: compared, and recorded. */
      projectId: string;
      /**
       * As its credentials write it: what a read the proxy makes upstream with them names (the
       * Application's, application-callback.ts). SignalWire's rules on its case are not known.
       */
      projectIdAsWritten: string;
    }
  | { ok: false; failure: ProxyFailure };

/**
 * The caller's Basic credentials are present (SignalWire checks them; the proxy passes them
 * on untouched) and name a project allowed here (SIGNALWIRE_PROJECT_IDS): no open relay.
 * With `accountSid` (a create's path), they must also be that account's.
 */
export function checkCaller(
  config: Config,
  errors: ProxyErrors,
  req: Request,
  accountSid?: string,
): CallerCheck {
  const credentials = parseBasicAuth(req.get('authorization'));
  if (!credentials || credentials.username === '' || credentials.password === '') {
    return {
      ok: false,
      failure: errors.unauthenticated('Authentication Error - invalid username or password'),
    };
  }
  // Project ids are UUIDs, whose case carries nothing (RFC 9562 §4): compared, and recorded
  // with the messages sent, in lower case, as SignalWire writes them in its answers and
  // callbacks and as config.ts keeps SIGNALWIRE_PROJECT_IDS and SIGNALWIRE_CREDENTIALS. The
  // caller's credentials still go upstream as written, and so does the project a read made with
  // them names (projectIdAsWritten).
  const projectId = credentials.username.toLowerCase();
  // Credentials belong to one project: for another AccountSid they do not authenticate, which
  // SignalWire (like Twilio) answers 401 code 20003, not 403. Refused here, like SignalWire
  // would, so a mismatched create never leaves the service.
  if (accountSid !== undefined && accountSid.toLowerCase() !== projectId) {
    return {
      ok: false,
      failure: errors.unauthenticated(
        'Authentication Error - the AccountSid in the URL does not match the credentials',
      ),
    };
  }
  const allowed = config.signalwireProjectIds;
  if (allowed.length > 0 && !allowed.includes(projectId)) {
    return { ok: false, failure: errors.projectNotAllowed(projectId) };
  }
  return { ok: true, projectId, projectIdAsWritten: credentials.username };
}

export type ReadBody = (req: Request, res: Response) => Promise<Buffer>;

/**
 * Bytes of request bodies the proxy holds at once. A body is held, decoded, parsed and written
 * again until SignalWire answers (up to SIGNALWIRE_TIMEOUT_MS): some 1 MB of memory for a
 * 256 KiB send. Without a bound, a burst of large sends (long media lists) while SignalWire was
 * slow took a replica past its 512 MiB memory limit, and the kill cut every callback in flight
 * with it. 16 MiB is 64 sends of the largest size at once, thousands of ordinary ones.
 */
export const PROXY_BODY_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/**
 * What each call under way counts against PROXY_BODY_BYTES_IN_FLIGHT besides its body: its
 * request, sockets and answer take about 30 KiB of heap. 8 KiB lets 2 048 calls (bodiless
 * reads, ordinary sends) be under way at once on one replica, ~60 MiB.
 */
export const PROXY_CALL_BYTES = 8 * 1024;

/** A body refused because the proxy already holds PROXY_BODY_BYTES_IN_FLIGHT: not sent. */
export class ProxyBodiesFull extends Error {
  constructor() {
    super('the send proxy holds as many calls and request bodies as it may');
  }
}

export interface BodyReader {
  /**
   * The raw body bytes, read only once the cheap checks passed, within PROXY_BODY_LIMIT (a
   * larger one is a 413 from the routes' error handler). No body is an empty buffer. Its size
   * is held against the bound — a declared one before a byte is read, a chunked one as it
   * arrives — and a body that does not fit is refused with ProxyBodiesFull. Only inside
   * `holding`.
   */
  read: ReadBody;
  /**
   * Runs a route's handler: what it read stays counted until the handler is done — until
   * SignalWire has answered, even when the caller gave up before (the body is held meanwhile).
   */
  holding<T>(res: Response, handler: () => Promise<T>): Promise<T>;
}

export function bodyReader(bytesInFlight = PROXY_BODY_BYTES_IN_FLIGHT): BodyReader {
  const raw = express.raw({ type: () => true, limit: PROXY_BODY_LIMIT });
  const bodies = byteBudget(bytesInFlight);
  /** Bytes each handler under way has read or reserved. */
  const reserved = new WeakMap<Response, { bytes: number }>();

  const read: ReadBody = (req, res) => {
    const mine = reserved.get(res);
    if (!mine) throw new Error('bodyReader: read outside holding');
    const take = (bytes: number) => {
      bodies.take(bytes);
      mine.bytes += bytes;
    };
    const refuse = () => {
      // Not read (on): the connection cannot carry another request after this one.
      res.setHeader('Connection', 'close');
      return new ProxyBodiesFull();
    };
    // The call itself, whatever its body: it is held until SignalWire answers or times out,
    // also after its caller has gone (a send cannot be taken back). Counted at its body's
    // bytes alone, a slow SignalWire let callers that hang up pile up ~30 KiB each without
    // bound (4 000 bodiless reads: +100 MiB of heap in 4 s).
    if (mine.bytes === 0) {
      if (!bodies.fits(0, PROXY_CALL_BYTES)) return Promise.reject(refuse());
      take(PROXY_CALL_BYTES);
    }
    // A compressed body is held inflated, up to the limit, whatever its size on the wire: it
    // is counted at the limit. A chunked one is counted as it arrives; a request with neither
    // header has none.
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    const compressed = encoding !== '' && encoding !== 'identity';
    const chunked = !compressed && req.headers['transfer-encoding'] !== undefined;
    if (!chunked) {
      const declared = Number(req.headers['content-length']);
      const size = compressed
        ? PROXY_BODY_LIMIT_BYTES
        : Number.isFinite(declared) && declared > 0
          ? Math.min(declared, PROXY_BODY_LIMIT_BYTES)
          : 0;
      if (!bodies.fits(mine.bytes, size)) return Promise.reject(refuse());
      take(size);
    }
    return new Promise((resolve, reject) => {
      let refused = false;
      const onData = (chunk: Buffer): void => {
        // Past the limit the body is a 413, read on only to be thrown away: nothing more held.
        const bytes = Math.min(chunk.length, PROXY_BODY_LIMIT_BYTES - mine.bytes);
        if (bytes <= 0) {
          req.off('data', onData);
          return;
        }
        if (bodies.fits(mine.bytes, bytes)) {
          take(bytes);
          return;
        }
        refused = true;
        req.off('data', onData);
        req.pause();
        reject(refuse());
      };
      if (chunked) req.on('data', onData);
      raw(req, res, (error?: unknown) => {
        req.off('data', onData);
        if (refused) return;
        if (error) reject(error);
        else resolve(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
      });
    });
  };

  return {
    read,
    async holding(res, handler) {
      const mine = { bytes: 0 };
      reserved.set(res, mine);
      try {
        return await handler();
      } finally {
        bodies.give(mine.bytes);
        reserved.delete(res);
      }
    },
  };
}

/**
 * The caller's headers that SignalWire gets: its credentials and what shapes the answer, by
 * name. Nothing else: not Host (the space URL's), not the hop-by-hop ones (Connection,
 * Transfer-Encoding, TE, Upgrade, Proxy-*), not Cookie (the internal listener's neighbours'
 * cookies are no business of SignalWire's), not X-Forwarded-* (the cluster's own addresses),
 * not Accept-Encoding (answers come unencoded, see signalwire-client.ts).
 */
const FORWARDED_HEADERS = [
  'authorization',
  'accept',
  'accept-charset',
  'accept-language',
  'content-type',
  'user-agent',
];

export function forwardedHeaders(req: Request): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = req.get(name);
    if (value !== undefined) headers[name] = value;
  }
  return headers;
}

/**
 * The proxy answers its own failures here, past the app's error handler, which counts the
 * service's 5xx (sw_status_http_server_errors_total): each proxy request carries the count to
 * call, and fail() calls it. Kept beside the response, not in the app: tests build several apps
 * on their own metrics in one process.
 */
const serverErrorCounts = new WeakMap<Response, () => void>();

/** Has fail() count this request's own 5xx with `count` (proxy.routes.ts mounts it first). */
export function countingServerErrors(count: (() => void) | undefined): RequestHandler {
  return (_req, res, next) => {
    if (count) serverErrorCounts.set(res, count);
    next();
  };
}

/**
 * Answers the proxy's own refusal or failure in the API's shape. Its 5xx are the service's own
 * (SignalWire unreachable 502, no answer in time 504, a bug 500) and are counted; SignalWire's
 * own 5xx are relayed as they came, never through here. The 503 of a replica shutting down is
 * not counted: every rollout answers a few, the caller retries at once on another replica
 * (Retry-After: 1) and the send was never made, as a draining /readyz's 503 is no error either.
 */
export function fail(res: Response, failure: ProxyFailure): void {
  if (failure.status >= 500 && failure.status !== 503) serverErrorCounts.get(res)?.();
  if (failure.status === 401) res.set('WWW-Authenticate', 'Basic realm="SignalWire"');
  // Only the proxy's own 503 (shutting down, or too many bodies held): not sent, retry.
  if (failure.status === 503) res.set('Retry-After', '1');
  res.status(failure.status).json(failure.error);
}

/**
 * Fires when the caller closes its connection before its answer is written: its client has
 * given up on the call (signalwire-client.ts then drops what need not go on).
 */
export function callerGoneSignal(res: Response): AbortSignal {
  const callerGone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) callerGone.abort();
  });
  return callerGone.signal;
}
