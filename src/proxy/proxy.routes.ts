import express, { Router } from 'express';
import type { ErrorRequestHandler, Request, Response } from 'express';
import type { Api } from '../messages/statuses';
import { parseBasicAuth } from '../signalwire/basic-auth';
import { messageKind, parseCompatCreate, parseNativeCreate } from '../signalwire/send-rules';
import { proxyErrors } from './proxy-errors';
import type { ProxyFailure } from './proxy-errors';
import { forwardSend } from './proxy.service';
import type { ProxyDeps, ProxyReply, ValidSend } from './proxy.service';
import {
  bodyEncoding,
  expectedContentTypes,
  readRequestBody,
  requestFields,
  withField,
} from './request-body';
import type { RequestBody } from './request-body';

/**
 * The send proxy's routes (DESIGN §5), on the internal listener. Both compatibility prefixes
 * are served: `/api/laml/2010-04-01/…` is the documented one, `/2010-04-01/…` the one the
 * official `@signalwire/compatibility-api` SDK requests once its space URL points here.
 */

const COMPAT_PREFIXES = ['/api/laml/2010-04-01', '/2010-04-01'];
export const COMPAT_CREATE_PATHS = COMPAT_PREFIXES.map(
  (prefix) => `${prefix}/Accounts/:accountSid/Messages{.json}`,
);
export const NATIVE_CREATE_PATH = '/api/messaging/messages';

/**
 * A create request is a few fields (a 1600-character body, 8 media URLs): 256 KiB leaves
 * room for any real one and stops a client from streaming megabytes into memory.
 */
export const PROXY_BODY_LIMIT = '256kb';
const PROXY_BODY_LIMIT_BYTES = 256 * 1024;

type ReadBody = (req: Request, res: Response) => Promise<void>;

export function proxyRoutes(deps: ProxyDeps): Router {
  const router = Router();
  // Raw bytes, read only once the cheap checks passed: the body is parsed here so that a
  // parse failure is answered in the API's shape and only after the credentials were checked.
  const rawBody = express.raw({ type: () => true, limit: PROXY_BODY_LIMIT });
  const readBody: ReadBody = (req, res) =>
    new Promise((resolve, reject) => {
      rawBody(req, res, (error?: unknown) => (error ? reject(error) : resolve()));
    });
  router.post(COMPAT_CREATE_PATHS, (req, res) => handle(deps, 'cxml', req, res, readBody));
  router.post(NATIVE_CREATE_PATH, (req, res) => handle(deps, 'native', req, res, readBody));
  router.use(proxyErrorHandler(deps));
  return router;
}

/**
 * Cheapest checks first (DESIGN §2 applies to both listeners): the declared size, the content
 * type and the credentials are checked before the body is read, the body is parsed within
 * its limits, and only then validated and forwarded.
 */
async function handle(
  deps: ProxyDeps,
  api: Api,
  req: Request,
  res: Response,
  readBody: ReadBody,
): Promise<void> {
  const errors = proxyErrors(api);
  if (Number(req.headers['content-length']) > PROXY_BODY_LIMIT_BYTES) {
    // The body is not read: the connection cannot carry another request after this one.
    res.setHeader('Connection', 'close');
    fail(res, errors.badBody(413, `The request body is larger than ${PROXY_BODY_LIMIT}`));
    return;
  }
  const encoding = bodyEncoding(api, req.get('content-type'));
  if (encoding === null) {
    fail(res, errors.badBody(415, `Content-Type must be ${expectedContentTypes(api)}`));
    return;
  }
  const credentials = parseBasicAuth(req.get('authorization'));
  if (!credentials || credentials.username === '' || credentials.password === '') {
    fail(res, errors.unauthenticated('Authentication Error - invalid username or password'));
    return;
  }
  const projectId = credentials.username;
  // Credentials belong to one project: for another AccountSid they do not authenticate, which
  // SignalWire (like Twilio) answers 401 code 20003, not 403. Refused here, like SignalWire
  // would, so a mismatched request never leaves the service.
  if (api === 'cxml' && req.params['accountSid'] !== projectId) {
    fail(
      res,
      errors.unauthenticated(
        'Authentication Error - the AccountSid in the URL does not match the credentials',
      ),
    );
    return;
  }
  const allowed = deps.config.signalwireProjectIds;
  if (allowed.length > 0 && !allowed.includes(projectId)) {
    fail(res, errors.projectNotAllowed(projectId));
    return;
  }

  await readBody(req, res);
  const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const read = readRequestBody(api, encoding, raw);
  if (!read.ok) {
    fail(res, errors.badBody(read.problem === 'too_many_parameters' ? 413 : 400, read.message));
    return;
  }

  const valid = validate(api, read.body);
  if (!valid.ok) {
    fail(res, valid.failure);
    return;
  }
  const send: ValidSend = {
    api,
    path: req.originalUrl,
    authorization: req.get('authorization')!,
    accept: req.get('accept'),
    userAgent: req.get('user-agent'),
    encode: (callbackUrl) => withField(read.body, valid.callbackField, callbackUrl),
    facts: { ...valid.facts, projectId },
  };
  reply(res, await forwardSend(deps, send, req.id));
}

type Validation =
  | {
      ok: true;
      callbackField: string;
      facts: Omit<ValidSend['facts'], 'projectId'>;
    }
  | { ok: false; failure: ProxyFailure };

/** The shared rules (send-rules.ts): what SignalWire would refuse never goes upstream. */
function validate(api: Api, body: RequestBody): Validation {
  const fields = requestFields(body);
  if (api === 'cxml') {
    const parsed = parseCompatCreate(fields as Record<string, unknown>);
    if (!parsed.ok) return { ok: false, failure: parsed };
    const v = parsed.value;
    return {
      ok: true,
      callbackField: 'StatusCallback',
      facts: {
        to: v.to,
        from: v.from,
        body: v.body,
        kind: messageKind(v.mediaUrls, v.sendAsMms),
        clientStatusCallback: v.statusCallback,
      },
    };
  }
  const parsed = parseNativeCreate(fields);
  if (!parsed.ok) return { ok: false, failure: parsed };
  const v = parsed.value;
  return {
    ok: true,
    callbackField: 'status_callback',
    facts: {
      to: v.to,
      from: v.from,
      body: v.body,
      kind: messageKind(v.media, v.sendAsMms),
      clientStatusCallback: v.statusCallback,
    },
  };
}

function fail(res: Response, failure: ProxyFailure): void {
  if (failure.status === 401) res.set('WWW-Authenticate', 'Basic realm="SignalWire"');
  res.status(failure.status).json(failure.error);
}

/** SignalWire's answer as it came: status, content type and the exact bytes. */
function reply(res: Response, proxyReply: ProxyReply): void {
  if (proxyReply.kind === 'failure') {
    fail(res, proxyReply.failure);
    return;
  }
  res.status(proxyReply.status);
  for (const [name, value] of Object.entries(proxyReply.headers)) res.setHeader(name, value);
  // res.end, not res.send: nothing may re-encode, add a charset or answer 304 from an ETag.
  res.end(proxyReply.body);
}

/** Body-parser failures (413 and the like) and bugs, in the error shape of the route's API. */
function proxyErrorHandler(deps: ProxyDeps): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const errors = proxyErrors(req.path.startsWith(NATIVE_CREATE_PATH) ? 'native' : 'cxml');
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      const message =
        status === 413
          ? `The request body is larger than ${PROXY_BODY_LIMIT}`
          : 'The request body could not be read';
      fail(res, errors.badBody(status, message));
      return;
    }
    deps.logger.error({ err, request_id: req.id }, 'send proxy failed');
    fail(res, errors.internal());
  };
}
