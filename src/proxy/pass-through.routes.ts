import { Router } from 'express';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { withTimeout } from '../db/with-timeout';
import { loggedPath } from '../http/request-log';
import type { RedactionScope } from '../messages/redaction';
import { clientCallbacksFor } from '../messages/send-intents';
import { injectedTokens, withClientCallback } from './answer-rewrite';
import { proxyErrors } from './proxy-errors';
import { forgetRedacted } from './redaction-retries';
import { bodyEncoding, readRequestBody, requestFields } from './request-body';
import {
  callerGoneSignal,
  checkCaller,
  fail,
  forwardedHeaders,
  refuseDeclaredTooLarge,
} from './proxy-http';
import type { BodyReader, ReadBody } from './proxy-http';
import type { ProxyDeps } from './proxy.service';
import { isSafeMethod } from './signalwire-client';
import type { UpstreamFailure } from './signalwire-client';
import {
  apiOfPath,
  couldCreateMessage,
  couldLeavePrefix,
  deletedMessageId,
  messageIdOf,
  namesNativeMessage,
  targetPath,
  updatedMessageId,
  upstreamTarget,
} from './upstream-target';

/**
 * Every other call of the SignalWire APIs the proxy serves (DESIGN §5: an app points its space
 * URL here "and changes nothing else"). The SDK client that sends through the proxy also
 * fetches, lists, updates and deletes messages, and reads other resources, with the same base
 * URL: those calls go to SIGNALWIRE_SPACE_URL as they came — method, path, query, body bytes,
 * Content-Type, the caller's Basic credentials — and SignalWire's status, Content-Type and
 * bytes come back as they are. Nothing is recorded. One exception: a native message's answer
 * (redaction's PATCH) echoes the `status_callback_url` the proxy gave the send, whose token
 * never leaves the service (DESIGN §2): it is read whole and the caller sees its own callback
 * URL there, as in a create's answer.
 *
 * The proxy's own rules still hold: credentials present, a project of SIGNALWIRE_PROJECT_IDS
 * (no open relay), bodies within PROXY_BODY_LIMIT, a timeout 504 and an unreachable 502 in
 * the API's shape. Nothing outside the prefixes is reached: a path with a dot segment, which
 * SignalWire or a gateway in front of it would resolve to another path of its host, is
 * refused. And no message is ever created this way: a create would go out without the
 * service's status callback, so a request that could be one is refused here.
 */
export function passThroughRoutes(
  deps: ProxyDeps,
  prefixes: readonly string[],
  bodies: BodyReader,
): Router {
  const router = Router();
  router.use([...prefixes], (req, res) =>
    bodies.holding(res, () => passThrough(deps, req, res, bodies.read)),
  );
  return router;
}

async function passThrough(
  deps: ProxyDeps,
  req: Request,
  res: Response,
  readBody: ReadBody,
): Promise<void> {
  const target = upstreamTarget(req.originalUrl);
  const path = targetPath(target);
  const errors = proxyErrors(apiOfPath(path));
  if (refuseDeclaredTooLarge(req, res, errors)) return;
  const caller = checkCaller(deps.config, errors, req);
  if (!caller.ok) {
    fail(res, caller.failure);
    return;
  }
  const log = {
    request_id: req.id,
    method: req.method,
    // Cut as the access log cuts it: any caller naming an allowed project reaches these lines.
    path: loggedPath(path),
    upstream: deps.signalwire.baseUrl,
  };
  if (couldLeavePrefix(path)) {
    deps.logger.warn(log, 'a path that could leave the API prefix upstream refused');
    fail(res, errors.outsideApi());
    return;
  }
  if (couldCreateMessage(req.method, path)) {
    deps.logger.warn(
      log,
      'a request that could create a message outside the create routes refused',
    );
    fail(res, errors.notACreateRoute());
    return;
  }

  const body = await readBody(req, res);
  // A read whose caller has gone is not kept waiting on SignalWire, nor any call that has not
  // reached it yet (signalwire-client.ts); one that changes something and has left is read to
  // its end.
  const callerGone = callerGoneSignal(res);
  // A message's update or deletion is read whole too: its text is forgotten here before the
  // caller hears it is done, and a streamed answer would wait on the store meanwhile.
  const updated = updatedMessageId(req.method, path);
  const deleted = deletedMessageId(req.method, path);
  if (namesNativeMessage(path) || updated !== null || deleted !== null) {
    const call = {
      target,
      path,
      updated,
      deleted,
      body,
      log,
      errors,
      project: caller.projectId,
      callerGone,
    };
    await passMessageAnswer(deps, req, res, call);
    return;
  }
  const result = await deps.signalwire.forward({
    method: req.method,
    target,
    headers: forwardedHeaders(req),
    body,
    signal: callerGone,
  });
  if (!result.ok) {
    const { failure, error: err } = result;
    if (leftByCaller(res, callerGone, failure)) return;
    deps.logger.warn({ ...log, err, failure }, 'SignalWire call passed through got no answer');
    fail(res, errors.upstream(failure, 'request'));
    return;
  }

  const answer = result.response;
  res.status(answer.status);
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  try {
    // Streamed: back-pressure from the caller reaches SignalWire, and a caller that goes away
    // ends the upstream exchange too.
    await pipeline(answer.body, res);
  } catch (err) {
    // The status is out already: the caller sees a cut-off body, the log says why.
    deps.logger.warn(
      { ...log, err, status: answer.status },
      'SignalWire answer passed through was cut off',
    );
  }
}

/**
 * A call dropped because its caller went away (signalwire-client.ts: a read whenever, any other
 * call only before it reached SignalWire): not SignalWire's failure nor the service's — no 5xx
 * counted, no warning a hang-up could repeat. 499 (a client that closed its request) is for the
 * request log only; nobody reads it. A call that changes something and failed once it had left
 * may have been done: that goes on as any failure (the text it erases is forgotten).
 */
function leftByCaller(res: Response, callerGone: AbortSignal, failure: UpstreamFailure): boolean {
  if (!callerGone.aborted) return false;
  if (!isSafeMethod(res.req.method) && failure !== 'unreachable') return false;
  res.status(499).end();
  return true;
}

/** A store that does not answer in this long does not hold the caller's answer back. */
const STORE_TIMEOUT_MS = 2_000;

/** A native message's call: the answer read whole, the service's callback URL replaced. */
async function passMessageAnswer(
  deps: ProxyDeps,
  req: Request,
  res: Response,
  call: {
    target: string;
    path: string;
    /** The message an update names (updatedMessageId), if the call is one. */
    updated: string | null;
    /** The message a deletion names (deletedMessageId), if the call is one. */
    deleted: string | null;
    body: Buffer;
    log: Record<string, unknown>;
    errors: ReturnType<typeof proxyErrors>;
    /** The caller's project (its Basic-auth username). */
    project: string;
    callerGone: AbortSignal;
  },
): Promise<void> {
  const result = await deps.signalwire.send({
    method: req.method,
    target: call.target,
    headers: forwardedHeaders(req),
    body: call.body,
    signal: call.callerGone,
  });
  if (!result.ok) {
    const { failure, error: err } = result;
    if (leftByCaller(res, call.callerGone, failure)) return;
    deps.logger.warn({ ...call.log, err, failure }, 'SignalWire call passed through got no answer');
    // Timed out or cut off once connected: SignalWire may have done it (unreachable: it never
    // had the request).
    if (failure !== 'unreachable') {
      await forgetRedactedText(deps, req, { ...call, outcome: 'unknown' });
    }
    fail(res, call.errors.upstream(failure, 'request'));
    return;
  }
  const answer = result.response;
  const tokens = injectedTokens(answer.body, deps.config.callbackTokenSecrets);
  let body = answer.body;
  if (tokens.size > 0) {
    const { db } = deps;
    const callbacks = await withTimeout(
      db
        ? clientCallbacksFor(db, messageIdOf(call.path), [...tokens.values()])
        : Promise.resolve(new Map<string, string>()),
      STORE_TIMEOUT_MS,
      "the caller's callback URL not read",
    ).catch((err: unknown) => {
      // The token is hidden all the same; the caller sees null where its URL would be.
      deps.logger.warn({ ...call.log, err }, "the caller's callback URL could not be read");
      return new Map<string, string>();
    });
    for (const [token, ref] of tokens) {
      body = withClientCallback(body, token, callbacks.get(ref) ?? null);
    }
  }
  await forgetRedactedText(deps, req, { ...call, outcome: answer.status });
  res.status(answer.status);
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  res.end(body);
}

/**
 * A message SignalWire has redacted or deleted (an update that empties its body, or a
 * deletion, answered 2xx) loses its text here too (src/messages/redaction.ts), before the
 * caller hears that it is done; its status history stays (it was sent, and what became of it,
 * is the service's record). Also with STORE_BODY=false: what an earlier run with it on stored
 * is still here. A store that cannot do it does not hold the answer back: the log says so.
 *
 * So does one whose outcome is unknown (the exchange timed out or was cut off after SignalWire
 * had the request: it may have done it, and the app asked for the erasure), unless the message
 * is recorded as another project's — and only when SignalWire has already accepted these exact
 * credentials in this process (accepted-credentials.ts). The project is the caller's Basic-auth
 * username, which only SignalWire checks: without an answer, a wrong password would otherwise
 * erase that project's texts whenever SignalWire is slow. Credentials not yet seen accepted
 * keep the text, and the log says so, for the operator (or the app) to repeat the deletion.
 * And a deletion answered 404 of a message recorded as the caller's project's, on the same
 * condition — the message is gone there, typically deleted by an earlier try answered late, and
 * the app's retry is told so; but a 404 can be SignalWire's routing, given before any password
 * is checked, so it proves nothing of the credentials. Another project's 404 (or one for a
 * message with no project recorded) forgets nothing; nor does a native deletion, whatever the
 * answer: the native API has no deletion (RESEARCH §3.2), so SignalWire still holds the message.
 * Every other answer (4xx, 5xx) keeps the text.
 */
async function forgetRedactedText(
  deps: ProxyDeps,
  req: Request,
  call: {
    path: string;
    updated: string | null;
    deleted: string | null;
    body: Buffer;
    /** SignalWire's status, or 'unknown' when no answer came (timeout, interrupted). */
    outcome: number | 'unknown';
    project: string;
    log: Record<string, unknown>;
  },
): Promise<void> {
  const { db } = deps;
  if (!db) return;
  // The native API has no deletion (RESEARCH §3.2): whatever its answer, or none, SignalWire
  // still holds the message, and a 404 is its routing.
  if (call.deleted !== null && namesNativeMessage(call.path)) return;
  const { outcome } = call;
  let scope: RedactionScope;
  if (outcome === 'unknown') scope = { project: call.project, orUnrecorded: true };
  else if (outcome >= 200 && outcome < 300) scope = { any: true };
  else if (outcome === 404 && call.deleted !== null) {
    scope = { project: call.project, orUnrecorded: false };
  } else return;
  const emptied = call.updated !== null && emptiesText(req, call.path, call.body);
  const messageId = call.deleted ?? (emptied ? call.updated : null);
  if (messageId === null) return;
  const log = { ...call.log, message_id: messageId };
  // Only a 2xx (the one scope not bound to the caller's project) shows that SignalWire took
  // the caller's credentials.
  if (!('any' in scope) && !deps.acceptedCredentials?.has(req.get('authorization'))) {
    // Names the project, never the credentials.
    deps.logger.warn(
      { ...log, project: call.project, outcome },
      'a message whose redaction or deletion SignalWire did not confirm (no answer, or 404) ' +
        'keeps its text here: SignalWire was not yet seen accepting these credentials ' +
        '(repeat the deletion once a call with them has succeeded)',
    );
    return;
  }
  // The work goes on past the caller's answer (redaction-retries.ts REDACTION_TURN_WAIT_MS).
  // Its failure is logged and retried in the background (createRedactionRetries) when the
  // app has the retries; the caller has SignalWire's answer all the same. The error says which
  // bound it met: no turn (ETIMEDOUT, untouched) or a held row (57014, 55P03: rolled back).
  const retries = deps.redactionRetries;
  const work = forgetRedacted(db, messageId, scope).catch((err: unknown) => {
    deps.logger.warn(
      { ...log, err },
      retries
        ? 'a message redacted or deleted at SignalWire keeps its text here for now: the store ' +
            'did not do it (retried in the background unless stopping: then logged at error)'
        : 'a message redacted or deleted at SignalWire keeps its text here: the store did not do it',
    );
    retries?.retry(messageId, scope, log);
  });
  // The caller waits for it a little, as for any write of the store, then has its answer.
  await withTimeout(work, STORE_TIMEOUT_MS, 'not done').catch(() => undefined);
}

/**
 * Whether an update's body empties the message's text (`body: ""`, `Body=`), read as a send's
 * body is (request-body.ts: the API's encodings, strict UTF-8, its limits).
 */
function emptiesText(req: Request, path: string, body: Buffer): boolean {
  const api = apiOfPath(path);
  const encoding = bodyEncoding(api, req.headers['content-type']);
  if (encoding === null) return false;
  const read = readRequestBody(api, encoding, body);
  if (!read.ok) return false;
  const fields = requestFields(read.body);
  return (
    typeof fields === 'object' &&
    fields !== null &&
    ((fields as Record<string, unknown>)['body'] === '' ||
      (fields as Record<string, unknown>)['Body'] === '')
  );
}
