import type { FormParams } from '../signalwire/signing';

/**
 * Scheme B signs the URL and then every parameter's name and value, sorted by name, with
 * nothing between them (SIGNALWIRE.md "Signing"). So one signature covers every other way of
 * cutting the same string into sorted pairs. SignalWire signs the callback for the attacker's
 * own message, whose text (`Body`) the attacker wrote:
 *
 *   AccountSid<a> Body<hiMessageSid<victim>MessageStatusfailedZ> From<n> MessageSid<own> …
 *
 * and the very same signature verifies the form `AccountSid=<a>&Body=hi&MessageSid=<victim>&
 * MessageStatus=failed&Z=From<n>MessageSid<own>…`: a status for any message. The GET seams
 * are the same string cut elsewhere: a POST to a callback URL with a query, replayed as a GET
 * to that URL followed by its sorted parameters; or a GET callback's URL cut inside its `Body`,
 * its tail sent as a POST's form.
 *
 * The names that pick a message and its status can be forged only from the attacker's text,
 * and that text is only ever inside the genuine `Body` value. The genuine callback's own names
 * (its MessageSid<own>, which comes after `Body` in sorted order, and its AccountSid, which
 * comes first) are still in the string, outside that text: in a forged split they end up
 * inside another value, or glued across a boundary, or as a second key of the same name (a
 * repeated id or status is not one string: normalize.ts refuses it 400). In a genuine
 * callback every such name is a key of its own, or text inside `Body` (a message may say
 * "MessageSid"). So a verified form is refused when any occurrence of these names is neither.
 *
 * One case the positions cannot tell: a callback that never carried the name the attacker
 * forges (SmsSid alone, and a forged MessageSid, which normalize.ts reads first). SignalWire
 * writes the message's one sid under every id name it sends, and its one status under both
 * status names, so values that differ between such names are refused too.
 */

/**
 * The names normalize.ts reads to pick the message and its status, and AccountSid: first in
 * sorted order, it is what a form glued after a URL's query starts with. ErrorCode is left out:
 * it cannot move an event to another message (only an id can), so watching it would risk
 * refusing genuine callbacks for no protection.
 */
const WATCHED_NAMES = ['AccountSid', 'MessageSid', 'MessageStatus', 'SmsSid', 'SmsStatus'];

/** Keys in which a watched name may appear: each name, and SmsMessageSid (holds MessageSid). */
const KEYS_HOLDING_NAMES: ReadonlySet<string> = new Set([...WATCHED_NAMES, 'SmsMessageSid']);

/**
 * The names of a message's id, and of its status: SignalWire writes the same value under each
 * (the Sms* names are the legacy spellings of the Message* ones).
 */
const SYNONYMS: ReadonlyArray<ReadonlySet<string>> = [
  new Set(['MessageSid', 'SmsSid', 'SmsMessageSid']),
  new Set(['MessageStatus', 'SmsStatus']),
];

/** A stretch of the signed string, and what the receiver makes of it. */
interface Span {
  start: number;
  end: number;
  kind: 'key' | 'value' | 'other';
  /** The parameter a value belongs to. */
  key: string;
}

/**
 * Whether a form whose scheme B signature verified could be another signed callback split
 * differently (see above). `target` is the request target in origin form (path and query);
 * `form` is the urlencoded body's parameters in order, or null for a GET, whose parameters are
 * its query.
 */
export function signedFormMayBeResplit(target: string, form: FormParams | null): boolean {
  const queryAt = target.indexOf('?');
  const query = queryAt === -1 ? '' : target.slice(queryAt);
  if (form === null) {
    const params = query.slice(1);
    return (
      synonymsDisagree(new URLSearchParams(params)) || nameMisplaced(params, querySpans(params))
    );
  }
  // A POST's fields are its body's alone: its query (signed just before them) holds none.
  const { signed, spans } = formSpans(query, form);
  return synonymsDisagree(form) || nameMisplaced(signed, spans);
}

/** A GET's query as signed (raw, separators included): keys, values and the `=` and `&`. */
function querySpans(query: string): Span[] {
  const spans: Span[] = [];
  let at = 0;
  for (const piece of query.split('&')) {
    const equals = piece.indexOf('=');
    const keyEnd = at + (equals === -1 ? piece.length : equals);
    const key = query.slice(at, keyEnd);
    push(spans, at, keyEnd, 'key', key);
    if (equals !== -1) {
      push(spans, keyEnd, keyEnd + 1, 'other', '');
      push(spans, keyEnd + 1, at + piece.length, 'value', key);
    }
    at += piece.length;
    if (at < query.length) push(spans, at, at + 1, 'other', '');
    at += 1;
  }
  return spans;
}

/**
 * What scheme B signs after the URL's path: the query, then each parameter's name and value in
 * the order signedFormParams (src/signalwire/signing.ts) sorts them: by name, stable.
 */
function formSpans(query: string, form: FormParams): { signed: string; spans: Span[] } {
  const spans: Span[] = [];
  push(spans, 0, query.length, 'other', '');
  let signed = query;
  const sorted = [...form].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, value] of sorted) {
    push(spans, signed.length, signed.length + name.length, 'key', name);
    signed += name;
    push(spans, signed.length, signed.length + value.length, 'value', name);
    signed += value;
  }
  return { signed, spans };
}

/** Adds a span that is not empty (an empty one holds no name, and would break the search). */
function push(spans: Span[], start: number, end: number, kind: Span['kind'], key: string): void {
  if (end > start) spans.push({ start, end, kind, key });
}

/** Whether a watched name occurs anywhere but in a key holding it or inside `Body`'s value. */
function nameMisplaced(signed: string, spans: readonly Span[]): boolean {
  for (const name of WATCHED_NAMES) {
    for (let at = signed.indexOf(name); at !== -1; at = signed.indexOf(name, at + 1)) {
      const span = spanAt(spans, at);
      const inside = at + name.length <= span.end;
      const allowed =
        inside &&
        (span.kind === 'key'
          ? KEYS_HOLDING_NAMES.has(signed.slice(span.start, span.end))
          : span.kind === 'value' && span.key === 'Body');
      if (!allowed) return true;
    }
  }
  return false;
}

/** The span holding offset `at` (spans are contiguous, not empty, in order). */
function spanAt(spans: readonly Span[], at: number): Span {
  let low = 0;
  let high = spans.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (spans[middle]!.start <= at) low = middle;
    else high = middle - 1;
  }
  return spans[low]!;
}

/** Whether the names of the id (MessageSid, SmsSid, SmsMessageSid) or of the status differ. */
function synonymsDisagree(params: Iterable<readonly [string, string]>): boolean {
  const seen: Array<string | undefined> = SYNONYMS.map(() => undefined);
  for (const [name, value] of params) {
    const which = SYNONYMS.findIndex((names) => names.has(name));
    if (which === -1) continue;
    if (seen[which] === undefined) seen[which] = value;
    else if (seen[which] !== value) return true;
  }
  return false;
}
