import type { StatusEvent } from '../messages/status-event';

// What a field costs beyond its text: the key or slot, the value's header.
const FIELD_OVERHEAD = 8;
// What V8 holds for a parsed JSON object or array beyond its slots (measured with Node 20:
// `[{},{},…]` costs 64 bytes an item, `[[],[],…]` 40, an object of many keys ~60 a key), so
// that a body of empty containers — 48 KB of `{},` parse to 1 MB — is not counted as 128 KB.
const OBJECT_OVERHEAD = 56;
const ARRAY_OVERHEAD = 32;
const KEY_OVERHEAD = 40;
// The event's own fixed fields, dates and object headers.
const EVENT_OVERHEAD = 256;

/**
 * About how many bytes of callback data an event carries: the text of its fields, of its raw
 * payload and of the copy of its body kept for the relay, plus a small overhead per field.
 * What INGEST_QUEUE_MAX_BYTES bounds — a count alone lets 5,000 bodies of 64 KiB hold 320 MB.
 * Iterative, so no payload is deep enough to overflow the stack.
 */
export function approximateEventBytes(event: StatusEvent): number {
  let bytes = EVENT_OVERHEAD;
  for (const text of [
    event.messageId,
    event.rawStatus,
    event.errorCode,
    event.errorMessage,
    event.from,
    event.to,
    event.projectId,
    event.send?.body,
    event.send?.clientStatusCallback,
    // The callback as received, kept for the relay (base64: a third more than the body).
    event.relay?.body,
    event.relay?.contentType,
  ]) {
    if (typeof text === 'string') bytes += text.length;
  }
  const pending: unknown[] = [event.raw];
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value === 'string') bytes += value.length + FIELD_OVERHEAD;
    else if (Array.isArray(value)) {
      bytes += FIELD_OVERHEAD + ARRAY_OVERHEAD;
      for (const item of value) pending.push(item);
    } else if (typeof value === 'object' && value !== null) {
      bytes += FIELD_OVERHEAD + OBJECT_OVERHEAD;
      // Parsed JSON and form fields are plain objects: own enumerable keys only.
      for (const key in value) {
        bytes += key.length + KEY_OVERHEAD;
        pending.push((value as Record<string, unknown>)[key]);
      }
    } else bytes += FIELD_OVERHEAD;
  }
  return bytes;
}
