import { mintCallbackToken } from '../callbacks/callback-token';
import type { Config } from '../config';
import type { Db } from '../db/database';
import { withTimeout } from '../db/with-timeout';
import type { Logger } from '../logger';
import type { Lifecycle } from '../http/health.routes';
import type { EventRecorder } from '../messages/event-recorder';
import { forgetSendIntent, rememberSendIntent } from '../messages/send-intents';
import type { Api } from '../messages/statuses';
import type { AcceptedCredentials } from './accepted-credentials';
import { withClientCallback } from './answer-rewrite';
import type { ApplicationCallbacks } from './application-callback';
import { proxyErrors } from './proxy-errors';
import type { ProxyFailure } from './proxy-errors';
import type { RedactionRetries } from './redaction-retries';
import type { EncodedBody } from './request-body';
import { sendEvent } from './send-event';
import type { SendContext } from './send-event';
import { metricLabel } from './signalwire-client';
import type { SignalWireClient, UpstreamStatus } from './signalwire-client';

export interface ProxyDeps {
  config: Config;
  logger: Logger;
  recorder: EventRecorder;
  /**
   * Where a send's intent is written before it is forwarded (messages/send-intents.ts), so a
   * callback that beats the proxy's record still reaches the caller's own callback. Absent:
   * no intents (such a callback is stored, but not relayed).
   */
  db?: Db;
  signalwire: SignalWireClient;
  /** Reads a cXML Application's status callback (application-callback.ts). */
  applications: ApplicationCallbacks;
  clock?: () => Date;
  /** Every upstream create call: API flavour, upstream status (or timeout/unreachable), seconds. */
  onUpstream?: (api: Api, status: UpstreamStatus, seconds: number) => void;
  /**
   * SignalWire accepted a send that could not be recorded (store down, or an answer without a
   * message id). The message exists: its callbacks will create the row, without send facts.
   */
  onUnrecorded?: (api: Api) => void;
  /** How long a send waits for its intent to be written or deleted (INTENT_WRITE_TIMEOUT_MS). */
  intentWriteTimeoutMs?: number;
  /** The process's shutdown state: when the connections will be cut (process/shutdown.ts). */
  lifecycle?: Pick<Lifecycle, 'connectionsCutAt' | 'sends'>;
  /**
   * Where a redaction the store could not apply at once is retried in the background
   * (redaction-retries.ts). Absent: it is only logged, and the text stays.
   */
  redactionRetries?: RedactionRetries;
  /**
   * The credentials SignalWire has lately accepted (accepted-credentials.ts), fed by the
   * client above. Absent: a deletion or redaction that got no answer forgets no text.
   */
  acceptedCredentials?: AcceptedCredentials;
}

/**
 * What a send needs after SignalWire's answer, before its caller has it: the record's write
 * (the recorder's commit timeout) and the answer itself.
 */
export const RECORD_RESERVE_MS = 3_000;

/**
 * The send intent is written before the send is forwarded. The pool has no timeout of its own
 * (db/database.ts), and a database that stopped answering would hold the send until TCP gives
 * up, minutes later, long after the caller gave up and retried (the write's statement timeout,
 * send-intents.ts, is the server's: it bounds a lock wait, not a silent server). Past this the
 * send goes out without an intent, as when the store is down. A refused send's answer waits as
 * long at most for its intent's deletion (forgetIntent).
 */
export const INTENT_WRITE_TIMEOUT_MS = 2_000;

/** A create request that passed authentication and the validation rules. */
export interface ValidSend {
  api: Api;
  /** Path and query as the caller sent them (upstream-target.ts); forwarded unchanged. */
  target: string;
  /**
   * The caller's headers that go upstream (proxy-http.ts), its Authorization among them,
   * passed through untouched (and never logged). Content-Type is the encoded body's.
   */
  headers: Readonly<Record<string, string>>;
  /** The caller's body with the status callback set to the given URL, without `omit`'s fields. */
  encode(callbackUrl: string, omit?: readonly string[]): EncodedBody;
  facts: Omit<SendContext, 'api' | 'ref' | 'receivedAt' | 'storeBody'>;
  /** A compatibility send's `ApplicationSid` (a UUID), or null. */
  applicationSid: string | null;
  /**
   * The caller's project as its credentials write it (`facts.projectId` is in lower case): the
   * account of the Application's read, made with those credentials.
   */
  projectIdAsWritten: string;
  /**
   * Fires when the caller goes (its connection closes unanswered). Its client counts the send
   * as failed and may retry: a send not yet forwarded, or whose connection to SignalWire is not
   * yet up, is then dropped, since forwarding it would send twice.
   */
  callerGone?: AbortSignal;
}

export type ProxyReply =
  | { kind: 'upstream'; status: number; headers: Record<string, string>; body: Buffer }
  | { kind: 'failure'; failure: ProxyFailure }
  /** Not forwarded: the caller went away first, and there is no one to answer. */
  | { kind: 'abandoned' };

/**
 * Forwards one send (DESIGN §5): mints the per-send callback token, points the status callback
 * at this service, calls SignalWire, records the message's first event from a 2xx answer, and
 * hands back SignalWire's answer as it came.
 */
export async function forwardSend(
  deps: ProxyDeps,
  send: ValidSend,
  requestId: string,
): Promise<ProxyReply> {
  const { config, logger } = deps;
  const { api } = send;
  const { token, ref } = mintCallbackToken(config.callbackTokenSecrets);
  // Where the caller's callbacks go: its StatusCallback, or its Application's.
  const target = await relayTarget(deps, send, requestId);
  const encoded = send.encode(
    `${config.publicBaseUrl}/callbacks/${api}/${token}`,
    target.withoutApplication ? ['ApplicationSid'] : [],
  );

  const headers = { ...send.headers, 'content-type': encoded.contentType };

  const callerCallback = send.facts.clientStatusCallback;
  const relayed: ValidSend = {
    ...send,
    facts: { ...send.facts, clientStatusCallback: target.url },
  };
  const intent = await rememberIntent(deps, relayed, ref, requestId);
  // The Application read or the intent write took longer than the caller waited.
  if (send.callerGone?.aborted) return abandoned(deps, send, ref, intent, requestId);
  // Shutting down: a send whose answer might come after the connections are cut is not
  // forwarded. Its caller would see the connection drop and retry a message SignalWire sends.
  const cutAt = deps.lifecycle?.connectionsCutAt;
  if (
    cutAt !== undefined &&
    performance.now() + config.signalwireTimeoutMs + RECORD_RESERVE_MS > cutAt
  ) {
    logger.info({ request_id: requestId, api }, 'shutting down: the send was not forwarded');
    if (intent) await forgetIntent(deps, ref);
    return { kind: 'failure', failure: proxyErrors(api).shuttingDown() };
  }
  const started = process.hrtime.bigint();
  const result = await deps.signalwire.send({
    method: 'POST',
    target: send.target,
    headers,
    body: Buffer.from(encoded.text, 'utf8'),
    signal: send.callerGone,
  });
  // Unreachable after the caller went: the connection was not up yet, and was dropped unsent.
  if (!result.ok && result.failure === 'unreachable' && send.callerGone?.aborted) {
    return abandoned(deps, send, ref, intent, requestId);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  deps.onUpstream?.(api, result.ok ? result.response.status : metricLabel(result.failure), seconds);

  const log = { request_id: requestId, api, upstream: deps.signalwire.baseUrl, seconds };
  if (!result.ok) {
    const { failure, error: err } = result;
    if (failure === 'unreachable') {
      // No connection was made: not a byte of the send left, so the caller may retry.
      logger.warn({ ...log, err }, 'SignalWire unreachable; the send was not forwarded');
      if (intent) await forgetIntent(deps, ref);
    } else {
      // The provider may have queued it: its callbacks carry our token and will record it,
      // and the intent, which expires with the token, lets them reach the caller's callback.
      logger.warn(
        { ...log, err, failure },
        failure === 'timeout'
          ? 'SignalWire did not answer in time; the send may have happened'
          : 'The connection to SignalWire failed before its answer; the send may have happened',
      );
    }
    return { kind: 'failure', failure: proxyErrors(api).upstream(failure, 'send') };
  }

  // The caller (and the store) see the caller's own callback URL, never the token URL.
  const response = {
    ...result.response,
    body: withClientCallback(result.response.body, token, callerCallback),
  };
  const receivedAt = (deps.clock ?? (() => new Date()))();
  const { status } = response;
  if (status >= 200 && status < 300) {
    await record(deps, relayed, response.body, { ref, receivedAt, requestId });
  } else if (status >= 500) {
    // A 5xx (SignalWire's own, or a gateway's 502/503/504 in front of it) does not say the
    // send was refused: it may have been queued before the failure. The intent stays.
    logger.warn(
      { ...log, status },
      'SignalWire answered with a server error; the send may have happened',
    );
  } else {
    logger.info({ ...log, status }, 'SignalWire refused the send');
    if (intent) await forgetIntent(deps, ref);
  }
  return { kind: 'upstream', ...response };
}

/** The caller went away before the send left: nothing was sent, and no one reads an answer. */
async function abandoned(
  deps: ProxyDeps,
  send: ValidSend,
  ref: string,
  intent: boolean,
  requestId: string,
): Promise<ProxyReply> {
  deps.logger.info(
    { request_id: requestId, api: send.api },
    'the caller went away before the send was forwarded: not sent',
  );
  if (intent) await forgetIntent(deps, ref);
  return { kind: 'abandoned' };
}

/**
 * The URL the caller's callbacks are relayed to (DESIGN §10): its StatusCallback, or, for a
 * compatibility send that names an ApplicationSid and no StatusCallback, the Application's
 * status callback, which SignalWire would have used had the proxy not set its own.
 *
 * And whether the ApplicationSid is left out of the send. Its only documented effect on a
 * message is its status callback (seed 002: "used to configure the message's status
 * callback"), and which one wins when a send also gives a StatusCallback is not documented for
 * SignalWire; on Twilio, whose API the compatibility API follows, the Application's does ("the
 * status_callback parameter of this request is ignored"). Sent on, it could take every
 * callback past the proxy's URL, and the message would stay `queued` here. So once the
 * Application is read (it exists, and its callback is known), it is left out, and the proxy's
 * URL is the send's only status callback, whichever rule SignalWire follows. With a
 * StatusCallback given too, the Application is not read (its callback is not relayed to, and
 * a read would add its wait to every such send): it is left out unread.
 *
 * A failed lookup does not stop the send: the ApplicationSid then goes on as given, and
 * SignalWire decides whether the Application exists. The log says what that costs.
 */
async function relayTarget(
  deps: ProxyDeps,
  send: ValidSend,
  requestId: string,
): Promise<{ url: string | null; withoutApplication: boolean }> {
  const given = send.facts.clientStatusCallback;
  if (send.api !== 'cxml' || send.applicationSid === null) {
    return { url: given, withoutApplication: false };
  }
  if (given !== null) return { url: given, withoutApplication: true };
  const found = await deps.applications.lookup(
    send.facts.projectId,
    send.applicationSid,
    send.headers['authorization'],
    send.projectIdAsWritten,
  );
  if (found.ok) return { url: found.url, withoutApplication: true };
  deps.logger.warn(
    {
      request_id: requestId,
      api: send.api,
      application_sid: send.applicationSid,
      reason: found.reason,
    },
    'the Application could not be read: the send names it as given; its callbacks are not relayed, and are not stored should SignalWire report to the Application',
  );
  return { url: null, withoutApplication: false };
}

/**
 * The caller's own callback, remembered under the token's ref before the send is forwarded.
 * A failure here (the store is down) must not stop the send: the proxy forwards without a
 * store today, and its record will fail too; the callbacks are still stored (spooled), only a
 * callback that beats the record then goes unrelayed. Returns whether an intent was written.
 */
async function rememberIntent(
  deps: ProxyDeps,
  send: ValidSend,
  ref: string,
  requestId: string,
): Promise<boolean> {
  const url = send.facts.clientStatusCallback;
  if (!deps.db || !url) return false;
  try {
    const written = rememberSendIntent(deps.db, {
      ref,
      clientStatusCallback: url,
      ttlDays: deps.config.callbackTokenTtlDays,
    });
    // Late, it may still be written: then it expires with the token, like any leftover intent.
    await withTimeout(
      written,
      deps.intentWriteTimeoutMs ?? INTENT_WRITE_TIMEOUT_MS,
      'send intent not written',
    );
    return true;
  } catch (err) {
    deps.logger.warn(
      { err, request_id: requestId, api: send.api, ref },
      'send intent not written: a callback that beats the record of this send will not be relayed',
    );
    return false;
  }
}

/**
 * The send did not happen: its intent can go now rather than expire (best effort). SignalWire's
 * answer waits for it at most INTENT_WRITE_TIMEOUT_MS: while another session held send_intents,
 * a refused send's 400 reached its caller only when the lock went. An intent not deleted is read
 * by nothing and expires (forgetSendIntent); a late delete, bounded by its statement timeout
 * (INTENT_STATEMENT_TIMEOUT_MS), may still take effect.
 */
async function forgetIntent(deps: ProxyDeps, ref: string): Promise<void> {
  await withTimeout(
    forgetSendIntent(deps.db!, ref),
    deps.intentWriteTimeoutMs ?? INTENT_WRITE_TIMEOUT_MS,
    'send intent not deleted',
  ).catch((err: unknown) => deps.logger.debug({ err, ref }, 'send intent left to expire'));
}

/**
 * Records the accepted send. A failure here must not turn a sent message into an error for
 * the caller (it would retry and send twice): it is logged and counted, and the answer goes
 * back as it came. The callbacks, authenticated by the token, still create the message.
 */
async function record(
  deps: ProxyDeps,
  send: ValidSend,
  body: Buffer,
  meta: { ref: string; receivedAt: Date; requestId: string },
): Promise<void> {
  const { api } = send;
  const context: SendContext = {
    ...send.facts,
    api,
    ref: meta.ref,
    receivedAt: meta.receivedAt,
    storeBody: deps.config.storeBody,
  };
  const log = { request_id: meta.requestId, api, ref: meta.ref };
  let event: ReturnType<typeof sendEvent>;
  try {
    event = sendEvent(context, parseJson(body));
  } catch (err) {
    // An answer this cannot read (one nested 200 000 deep overflowed the stack) is no reason to
    // turn a sent message into an error for the caller, who would send it again.
    deps.onUnrecorded?.(api);
    deps.logger.error(
      { ...log, err },
      'SignalWire accepted the send but its answer could not be read: not recorded',
    );
    return;
  }
  if (!event) {
    deps.onUnrecorded?.(api);
    deps.logger.error(
      log,
      'SignalWire accepted the send but its answer names no message: not recorded',
    );
    return;
  }
  try {
    await deps.recorder.record(event);
  } catch (err) {
    deps.onUnrecorded?.(api);
    deps.logger.error(
      { ...log, err, message_id: event.messageId },
      'send accepted by SignalWire but not recorded; its callbacks will create the message',
    );
  }
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
}
