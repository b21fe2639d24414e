import { Router } from 'express';
import type { ErrorRequestHandler, Request, Response } from 'express';
import type { Api } from '../messages/statuses';
import type { Metrics } from '../metrics/metrics';
import {
  COMPAT_SINGLE_VALUED,
  messageKind,
  parseCompatCreate,
  parseNativeCreate,
} from '../signalwire/send-rules';
import { proxyErrors } from './proxy-errors';
import type { ProxyFailure } from './proxy-errors';
import {
  PROXY_BODY_LIMIT,
  ProxyBodiesFull,
  bodyReader,
  callerGoneSignal,
  checkCaller,
  countingServerErrors,
  fail,
  forwardedHeaders,
  refuseDeclaredTooLarge,
} from './proxy-http';
import type { ReadBody } from './proxy-http';
import { forwardSend } from './proxy.service';
import type { ProxyDeps, ProxyReply, ValidSend } from './proxy.service';
import { passThroughRoutes } from './pass-through.routes';
import {
  bodyEncoding,
  expectedContentTypes,
  readRequestBody,
  requestFields,
  withField,
} from './request-body';
import type { FormPairs, RequestBody } from './request-body';
import {
  apiOfPath,
  couldLeavePrefix,
  parameterName,
  queryParameterNames,
  targetPath,
  upstreamTarget,
} from './upstream-target';

/**
 * The send proxy's routes (DESIGN §5), on the internal listener. Both compatibility prefixes
 * are served: `/api/laml/2010-04-01/…` is the documented one, `/2010-04-01/…` the one the
 * official `@signalwire/compatibility-api` SDK requests once its space URL points here.
 * Routing ignores case and a trailing slash (Express's defaults), so every spelling of a
 * create path that SignalWire would take as one comes here; every other call under these
 * prefixes is passed through unchanged (pass-through.routes.ts).
 */

const COMPAT_PREFIXES = ['/api/laml/2010-04-01', '/2010-04-01'];
export const COMPAT_CREATE_PATHS = COMPAT_PREFIXES.map(
  (prefix) => `${prefix}/Accounts/:accountSid/Messages{.json}`,
);
export const NATIVE_CREATE_PATH = '/api/messaging/messages';

/**
 * The fields that decide where a send's callbacks go. The proxy reads and replaces them in
 * the body; the target's query string goes upstream as it came, and a server that merges
 * query and body parameters (as Rails does) could take one from there: the service's callback
 * could be displaced, or the caller's own never be relayed. So they are refused there.
 */
const CALLBACK_FIELDS: Record<Api, readonly string[]> = {
  cxml: ['StatusCallback', 'ApplicationSid'],
  native: ['status_callback'],
};

/** Every path the proxy answers: the creates and the calls passed through. */
const PROXY_PREFIXES = [...COMPAT_PREFIXES, '/api/messaging'];

/**
 * `metrics`: where the proxy's own 5xx are counted (on the internal listener, the only one it
 * is on; app.ts passes it). They are answered by fail(), not by the
 * app's error handler that counts the rest.
 */
export type ProxyRouteDeps = ProxyDeps & { metrics?: Pick<Metrics, 'onServerError'> };

export function proxyRoutes(deps: ProxyRouteDeps): Router {
  const router = Router();
  const { metrics } = deps;
  router.use(
    PROXY_PREFIXES,
    countingServerErrors(metrics && (() => metrics.onServerError('internal', 'authenticated'))),
  );
  // Raw bytes, read only once the cheap checks passed: the body is parsed here so that a
  // parse failure is answered in the API's shape and only after the credentials were checked.
  const bodies = bodyReader();
  router.post(COMPAT_CREATE_PATHS, (req, res) =>
    bodies.holding(res, () => handle(deps, 'cxml', req, res, bodies.read)),
  );
  router.post(NATIVE_CREATE_PATH, (req, res) =>
    bodies.holding(res, () => handle(deps, 'native', req, res, bodies.read)),
  );
  router.use(passThroughRoutes(deps, PROXY_PREFIXES, bodies));
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
  const callerGone = callerGoneSignal(res);
  const errors = proxyErrors(api);
  if (refuseDeclaredTooLarge(req, res, errors)) return;
  const target = upstreamTarget(req.originalUrl);
  // The account id is a path parameter: decoded, it could be a dot segment upstream.
  if (couldLeavePrefix(targetPath(target))) {
    fail(res, errors.outsideApi());
    return;
  }
  const encoding = bodyEncoding(api, req.get('content-type'));
  if (encoding === null) {
    fail(res, errors.badBody(415, `Content-Type must be ${expectedContentTypes(api)}`));
    return;
  }
  const caller = checkCaller(
    deps.config,
    errors,
    req,
    api === 'cxml' ? String(req.params['accountSid']) : undefined,
  );
  if (!caller.ok) {
    fail(res, caller.failure);
    return;
  }

  const read = readRequestBody(api, encoding, await readBody(req, res));
  if (!read.ok) {
    const failure =
      read.problem === 'inexact_number'
        ? errors.inexactNumber(read.field, read.message)
        : errors.badBody(read.problem === 'too_many_parameters' ? 413 : 400, read.message);
    fail(res, failure);
    return;
  }

  const valid = validate(api, read.body);
  if (!valid.ok) {
    fail(res, valid.failure);
    return;
  }
  const inQuery = queryParameterNames(target).find((name) => CALLBACK_FIELDS[api].includes(name));
  if (inQuery !== undefined) {
    fail(res, errors.fieldInQuery(inQuery));
    return;
  }
  // `StatusCallback[]=…` or `StatusCallback]=…` in a form: a lenient server (Rack, PHP) reads
  // it as StatusCallback, beside the proxy's own or in its place, which the proxy neither
  // replaces nor leaves out.
  const bracketed = read.body.type === 'form' ? bracketedField(read.body.pairs, api) : undefined;
  if (bracketed !== undefined) {
    fail(res, errors.fieldBracketed(bracketed));
    return;
  }
  const send: ValidSend = {
    api,
    target,
    headers: forwardedHeaders(req),
    encode: (callbackUrl, omit) =>
      withField(read.body, valid.callbackField, callbackUrl, valid.singleValued, omit),
    facts: { ...valid.facts, projectId: caller.projectId },
    applicationSid: valid.applicationSid,
    projectIdAsWritten: caller.projectIdAsWritten,
    callerGone,
  };
  // Counted until answered: a shutdown cuts connections only once it has been (up to a bound).
  const answered = forwardSend(deps, send, req.id).then((proxyReply) => reply(res, proxyReply));
  await (deps.lifecycle?.sends?.track(answered) ?? answered);
}

type Validation =
  | {
      ok: true;
      callbackField: string;
      /** Form keys sent upstream once, with the value validated (request-body.ts withField). */
      singleValued: readonly string[];
      facts: Omit<ValidSend['facts'], 'projectId'>;
      applicationSid: string | null;
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
      singleValued: COMPAT_SINGLE_VALUED,
      facts: {
        to: v.to,
        from: v.from,
        body: v.body,
        kind: messageKind(v.mediaUrls, v.sendAsMms),
        clientStatusCallback: v.statusCallback,
      },
      applicationSid: v.applicationSid,
    };
  }
  const parsed = parseNativeCreate(fields);
  if (!parsed.ok) return { ok: false, failure: parsed };
  const v = parsed.value;
  return {
    ok: true,
    callbackField: 'status_callback',
    singleValued: [],
    facts: {
      to: v.to,
      from: v.from,
      body: v.body,
      kind: messageKind(v.media, v.sendAsMms),
      clientStatusCallback: v.statusCallback,
      customVariables: v.customVariables,
    },
    applicationSid: null,
  };
}

/** SignalWire's answer as it came: status, content type and the exact bytes. */
function reply(res: Response, proxyReply: ProxyReply): void {
  if (proxyReply.kind === 'failure') {
    fail(res, proxyReply.failure);
    return;
  }
  if (proxyReply.kind === 'abandoned') {
    // Nobody reads it; 499 (a client that closed its request) is for the request log.
    res.status(499).end();
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
    const errors = proxyErrors(apiOfPath(req.path));
    if (err instanceof ProxyBodiesFull) {
      deps.logger.warn(
        { request_id: req.id },
        'send proxy request refused 503: too many calls or request bodies held at once',
      );
      fail(res, errors.busy());
      return;
    }
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

/**
 * A form key that a lenient server reads as a callback field but that is not spelled as one
 * (`ApplicationSid[]`, `StatusCallback]`, `[StatusCallback`: upstream-target.ts parameterName),
 * if any. The proxy replaces the field by its exact name only; Rails would file such a key
 * under the field too, and the later one wins there.
 */
function bracketedField(pairs: FormPairs, api: Api): string | undefined {
  return pairs
    .map(([key]) => key)
    .find((key) => {
      const name = parameterName(key);
      return name !== key && CALLBACK_FIELDS[api].includes(name);
    });
}
