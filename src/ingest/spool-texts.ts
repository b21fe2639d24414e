import type { StatusEvent } from '../messages/status-event';

/**
 * A spooled event holds the message's text as the run that received it kept it: with
 * STORE_BODY=true, its payload's `Body`/`body` and the send's text. Replayed by a run started
 * with STORE_BODY=false, it loses them as that run's own normalization would have removed them
 * (src/callbacks/normalize.ts, src/proxy/send-event.ts, src/reconcile/lookup-event.ts): the
 * spelling of its API only, the other being just another field. The relay's copy of the
 * callback is kept: the app is sent what SignalWire sent, as for a live callback.
 */
export function withoutStoredText(event: StatusEvent): StatusEvent {
  const callback = event.source === 'callback' || event.source === 'replay';
  const field = event.api === 'cxml' && callback ? 'Body' : 'body';
  const sendText = event.send !== undefined && event.send.body !== null;
  if (!(field in event.raw) && !sendText) return event;
  // No prototype, so a field named `__proto__` stays a field (spool-codec.ts).
  const raw = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(event.raw)) {
    if (key !== field) raw[key] = event.raw[key];
  }
  return { ...event, raw, ...(event.send && { send: { ...event.send, body: null } }) };
}
