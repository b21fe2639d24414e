import { setTimeout as sleep } from 'node:timers/promises';
import { relayUrl } from '../signalwire/send-rules';
import { signFormParams, signJsonBody } from '../signalwire/signing';
import type { FormParams } from '../signalwire/signing';
import { COMPAT_API_VERSION, isoSeconds } from './message-resources';
import type { SimulatedMessage } from './message-resources';
import type { ScenarioStep, SimulatorApi } from './scenarios';

/**
 * Signed status callbacks, built and delivered the way SignalWire does it (SIGNALWIRE.md
 * "Status callbacks", "Signing"): compatibility = form POST signed with scheme B, native =
 * JSON POST signed with scheme A, both in `X-SignalWire-Signature` over the callback URL exactly
 * as the sender gave it; at most 3 attempts, then the callback is dropped silently.
 */

export interface DeliveryAttempt {
  at: string;
  /** HTTP status of the answer; null when there was none (network error, timeout). */
  statusCode: number | null;
  error: string | null;
}

export interface CallbackDelivery {
  seq: number;
  messageId: string;
  api: SimulatorApi;
  url: string;
  status: string;
  errorCode: string | null;
  /** 1, or 2 for the second copy of a duplicated callback. */
  copy: number;
  contentType: string;
  /** The exact bytes posted, so a test can recompute the signature. */
  rawBody: string;
  signature: string;
  attempts: DeliveryAttempt[];
  outcome: 'pending' | 'delivered' | 'dropped';
}

export interface DeliveryPolicy {
  maxAttempts: number;
  /** Wait before attempt n+1 is n × this. */
  retryBackoffMs: number;
  timeoutMs: number;
}

/** Compatibility callback fields, in the order SignalWire's example payload has them. */
export function compatCallbackParams(m: SimulatedMessage, step: ScenarioStep): FormParams {
  const params: Array<[string, string]> = [
    ['MessageSid', m.id],
    ['MessageStatus', step.status],
  ];
  // ErrorCode only accompanies failed/undelivered; there is no ErrorMessage field.
  if (step.errorCode !== null) params.push(['ErrorCode', step.errorCode]);
  params.push(
    ['AccountSid', m.projectId],
    ['From', m.from],
    ['To', m.to],
    ['Body', m.body],
    ['NumMedia', String(m.media.length)],
    ['NumSegments', String(m.numSegments)],
    ['ApiVersion', COMPAT_API_VERSION],
  );
  return params;
}

/** Native callback body: a flat JSON object (SIGNALWIRE.md example). */
export function nativeCallbackPayload(
  m: SimulatedMessage,
  step: ScenarioStep,
  at: Date,
): Record<string, unknown> {
  return {
    id: m.id,
    project_id: m.projectId,
    status: step.status,
    to: m.to,
    from: m.from,
    body: m.body,
    number_of_segments: m.numSegments,
    timestamp: isoSeconds(at),
    error_code: step.errorCode,
    error_message: step.errorMessage,
    custom_variables: m.customVariables,
  };
}

/** A ready-to-send, signed callback for one step of a message. */
export function buildDelivery(
  seq: number,
  m: SimulatedMessage,
  step: ScenarioStep,
  copy: number,
  signingKey: string,
  at: Date,
): CallbackDelivery {
  // Without its fragment (SignalWire's #rt=/#ct= timeouts): it is never sent, so the app
  // checks the signature against the URL without it — as the service's relay signs.
  const url = relayUrl(m.statusCallback ?? '');
  const common = {
    seq,
    messageId: m.id,
    api: m.api,
    url,
    status: step.status,
    errorCode: step.errorCode,
    copy,
    attempts: [],
    outcome: 'pending' as const,
  };
  if (m.api === 'cxml') {
    const params = compatCallbackParams(m, step);
    return {
      ...common,
      contentType: 'application/x-www-form-urlencoded',
      rawBody: new URLSearchParams(params as Array<[string, string]>).toString(),
      signature: signFormParams(signingKey, url, params),
    };
  }
  const rawBody = JSON.stringify(nativeCallbackPayload(m, step, at));
  return {
    ...common,
    contentType: 'application/json',
    rawBody,
    signature: signJsonBody(signingKey, url, rawBody),
  };
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
  }
  return String(err);
}

/**
 * Posts the callback, retrying on a network error or a non-2xx answer. Mutates `delivery`
 * (attempts, outcome) so observers see progress. Rejects only when `signal` aborts, i.e. the
 * simulator is shutting down.
 */
export async function deliver(
  delivery: CallbackDelivery,
  policy: DeliveryPolicy,
  signal: AbortSignal,
): Promise<void> {
  for (let attempt = 1; attempt <= policy.maxAttempts; attempt += 1) {
    if (attempt > 1) await sleep((attempt - 1) * policy.retryBackoffMs, undefined, { signal });
    const record: DeliveryAttempt = { at: new Date().toISOString(), statusCode: null, error: null };
    delivery.attempts.push(record);
    const attemptSignal = untilShutdownOr(signal, policy.timeoutMs);
    try {
      const res = await postFollowing(delivery, attemptSignal.signal);
      record.statusCode = res.status;
      if (res.status >= 200 && res.status < 300) {
        delivery.outcome = 'delivered';
        return;
      }
      record.error = `HTTP ${res.status}`;
    } catch (err) {
      if (signal.aborted) throw err;
      record.error = describe(err);
    } finally {
      attemptSignal.done();
    }
  }
  delivery.outcome = 'dropped';
}

/** SignalWire follows up to three redirects of a status callback (SIGNALWIRE.md). */
const MAX_REDIRECTS = 3;

/**
 * One attempt: posts the callback and follows its redirects by hand, at most MAX_REDIRECTS
 * (fetch's own `follow` goes to twenty, and turns a POST redirected by 301–303 into a bodiless
 * GET). Every hop gets the same body and signature, as an HTTP client following a redirect
 * sends them; an answer still a redirect after the last hop counts as the attempt's answer.
 */
async function postFollowing(
  delivery: CallbackDelivery,
  signal: AbortSignal,
): Promise<{ status: number }> {
  let url = delivery.url;
  for (let hop = 0; ; hop += 1) {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': delivery.contentType,
        'x-signalwire-signature': delivery.signature,
        'user-agent': 'sw-status-simulator',
      },
      body: delivery.rawBody,
      redirect: 'manual',
      signal,
    });
    // Drain the body so the connection can be reused or closed cleanly.
    await res.arrayBuffer().catch(() => undefined);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status > 399 || location === null || hop === MAX_REDIRECTS) {
      return res;
    }
    url = new URL(location, url).href;
  }
}

/**
 * A signal that aborts when `shutdown` does or after `timeoutMs`, whichever comes first, and
 * lets go of `shutdown` once `done`. Not AbortSignal.any: on Node 20 the long-lived shutdown
 * signal keeps a reference to every signal ever made from it (one per callback delivered).
 */
function untilShutdownOr(
  shutdown: AbortSignal,
  timeoutMs: number,
): { signal: AbortSignal; done(): void } {
  const controller = new AbortController();
  const abort = (): void => controller.abort(shutdown.reason);
  if (shutdown.aborted) abort();
  else shutdown.addEventListener('abort', abort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new DOMException('The operation timed out.', 'TimeoutError')),
    timeoutMs,
  );
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer);
      shutdown.removeEventListener('abort', abort);
    },
  };
}
