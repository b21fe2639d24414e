import { originForm } from '../http/origin-form';
import type { Api } from '../messages/statuses';

/**
 * Where a proxied request goes at SignalWire, and which requests must not go there the way
 * they came. Pure functions over the request target (no I/O), shared by both kinds of proxy
 * route.
 */

/**
 * The path and query SignalWire gets: the caller's, byte for byte, without the scheme and
 * host of an absolute-form target (the space URL supplies those) or a fragment (never part
 * of a request). Always starts with `/`, so appending it to the space URL cannot change the
 * host it names.
 */
export function upstreamTarget(originalUrl: string): string {
  const target = originForm(originalUrl).split('#')[0]!;
  return target.startsWith('/') ? target : `/${target}`;
}

/** The path of a target, without its query. */
export function targetPath(target: string): string {
  return target.split('?')[0]!;
}

/**
 * The names of a target's query parameters as Rails (SignalWire's stack) files them: split on
 * `&` and `;` alike, spaces after either dropped (ActionDispatch's query parser, as Rack 2.2's),
 * form-decoded (a broken escape stays as written), then read by parameterName.
 * `?trace=1;status_callback=…` and `?status_callback]=…` both name status_callback there.
 */
export function queryParameterNames(target: string): string[] {
  const question = target.indexOf('?');
  if (question < 0) return [];
  const query = target
    .slice(question + 1)
    .split(/[&;] */)
    .join('&');
  return [...new URLSearchParams(query).keys()].map(parameterName);
}

/**
 * The field a lenient server files a parameter under: Rack 2.2's normalize_params, which Rails
 * keeps, drops leading `[`/`]` and reads up to the next bracket (`StatusCallback[]`, `a[b]`,
 * `]status_callback`, `[status_callback`, `StatusCallback]` → the name within). Rack would file
 * `status_callback[` whole; reading it as status_callback only refuses more. A name of brackets
 * only is itself.
 */
export function parameterName(name: string): string {
  return /^[[\]]*([^[\]]+)/.exec(name)?.[1] ?? name;
}

/** Native paths answer in the native error shape; everything else is compatibility. */
export function apiOfPath(path: string): Api {
  return path.toLowerCase().startsWith('/api/messaging') ? 'native' : 'cxml';
}

/**
 * Whether a path could name something outside the API prefix it came in under once a server
 * upstream reads it: it has a dot segment (`.`, `..`, also `..;param`) as written, or once
 * its escapes are decoded (`%2e%2e`, `..%2F`, double encoding), or with `\` read as `/`.
 * SignalWire, or a gateway in front of it (a space URL with a path), resolves dot segments,
 * often after decoding escapes, so `/api/messaging/../../admin` would reach `/admin` there:
 * the pass-through would be an open proxy to every path of that host. No real call has one:
 * SignalWire's resource names are words and its ids UUIDs. The query is not looked at.
 */
export function couldLeavePrefix(path: string): boolean {
  let text = path;
  for (let depth = 0; depth < 4; depth++) {
    for (const segment of text.split(/[/\\]/)) {
      const name = segment.split(';')[0]!.trim();
      if (name === '.' || name === '..') return true;
    }
    // Byte-wise, so that no escape (a broken one, or invalid UTF-8 next to it) keeps the
    // ones that decode to dots and separators from being seen.
    const next = text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) =>
      String.fromCharCode(parseInt(hex, 16)),
    );
    if (next === text) return false;
    text = next;
  }
  // Still more escapes after four decodings: no server reads a path that way.
  return true;
}

/** Methods that read: they never create a message, whatever the path. */
const READ_METHODS = new Set(['GET', 'HEAD']);

/**
 * Whether a request that is not one of the proxy's create routes could still create a
 * message upstream, so that it would go out without the service's status callback (and the
 * caller's own callback would never be relayed). Any method but a read aimed at a messages
 * collection counts, however the path is spelled: a server upstream may decode escapes,
 * ignore case, collapse slashes, resolve dot segments, drop `;parameters` or take another
 * extension (`Messages.xml`) where the create routes take only `Messages` and `Messages.json`.
 * A path that cannot be decoded is refused too: nothing tells what SignalWire would make of it.
 */
export function couldCreateMessage(method: string, path: string): boolean {
  if (READ_METHODS.has(method.toUpperCase())) return false;
  // Read both ways: a server may take a decoded `?`, `#` or NUL as a character of the path, or
  // (a gateway that decodes the path before it looks for the query or the fragment, a C string
  // ending at NUL) as its end, which makes `messages%3Fx=1%2Fy` read as `messages`.
  return [false, true].some((cutAtEnd) => {
    const segments = normalizedSegments(path, cutAtEnd);
    if (segments === null) return true;
    const last = segments.at(-1) ?? '';
    // The resource name without any `;parameters` or `.extension`.
    return last.split(/[;.]/)[0] === 'messages';
  });
}

/**
 * Whether a path names a native message (`/api/messaging/messages/{id}`: redaction's PATCH),
 * however spelled: SignalWire answers it with the message resource, which echoes the
 * `status_callback_url` the proxy gave the send, so its answer is read and rewritten
 * (pass-through.routes.ts) instead of streamed.
 */
export function namesNativeMessage(path: string): boolean {
  const segments = normalizedSegments(path);
  return (
    segments === null ||
    (segments.length > 3 &&
      segments[0] === 'api' &&
      segments[1] === 'messaging' &&
      segments[2]!.split(/[;.]/)[0] === 'messages')
  );
}

/**
 * The message a redaction names, when the request is one: a native `PATCH
 * /api/messaging/messages/{id}`, or a compatibility `POST …/Accounts/{project}/Messages/{sid}`
 * (`.json` or none) — SignalWire's update of a message, whose only documented use is emptying
 * its body.
 */
export function updatedMessageId(method: string, path: string): string | null {
  const resource = messageResource(path);
  if (resource === null) return null;
  const updates = resource.api === 'native' ? method === 'PATCH' : method === 'POST';
  return updates ? resource.id : null;
}

/**
 * The message a deletion names (`DELETE` of the same resources): SignalWire forgets the
 * message and its text, and so must the service — an app deletes a message to erase it (a
 * one-time code, a person's request), which is more than emptying its body.
 */
export function deletedMessageId(method: string, path: string): string | null {
  return method === 'DELETE' ? (messageResource(path)?.id ?? null) : null;
}

/**
 * A message resource's API and id, when the path names one: `/api/messaging/messages/{id}` or
 * `/api/laml/2010-04-01/Accounts/{project}/Messages/{sid}` (or under `/2010-04-01`; `.json` or
 * none), a trailing `/` allowed as the create routes allow it. The whole path, not only its end:
 * a deletion SignalWire answers 404 may forget the text (pass-through.routes.ts), and a path
 * with more before `/Accounts` is one SignalWire routes nowhere — a 404 given before any
 * credentials are checked. Another spelling is not recognised (ids keep their case).
 */
function messageResource(path: string): { api: Api; id: string } | null {
  const trimmed = withoutTrailingSlashes(path);
  const id = messageIdOf(trimmed);
  if (id === null) return null;
  if (/^\/api\/messaging\/messages\/[^/]+$/i.test(trimmed)) return { api: 'native', id };
  if (/^(?:\/api\/laml)?\/2010-04-01\/accounts\/[^/]+\/messages\/[^/]+$/i.test(trimmed)) {
    return { api: 'cxml', id };
  }
  return null;
}

/**
 * The message id a message resource's path ends with (`…/messages/{id}`, `…/Messages/{sid}.json`,
 * a trailing `/` allowed), decoded; null when it is empty or not valid percent-encoding.
 */
export function messageIdOf(path: string): string | null {
  try {
    const last = withoutTrailingSlashes(path).split('/').at(-1) ?? '';
    const id = decodeURIComponent(last.replace(/\.json$/i, ''));
    return id === '' ? null : id;
  } catch {
    return null;
  }
}

/**
 * Not `/\/+$/`: a regex tries that from every slash of a run that is not at the end
 * (`/api/messaging////…/x`), quadratic in the run — a 16 KiB path held the event loop for
 * ~0.3 s per request.
 */
function withoutTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === SLASH) end--;
  return path.slice(0, end);
}

const SLASH = 0x2f;

/**
 * The path's segments as the most lenient server would read them: percent-escapes decoded
 * (repeatedly, so a double-encoded dot or slash counts), `\` as `/`, empty and `.` segments
 * dropped, `..` resolved, lower case. With `cutAtEnd`, the decoded path ends at its first `?`,
 * `#` or NUL. Null when an escape is malformed.
 */
function normalizedSegments(path: string, cutAtEnd = false): string[] | null {
  let decoded = path;
  for (let i = 0; i < 3; i++) {
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      return null;
    }
    if (next === decoded) break;
    decoded = next;
  }
  if (cutAtEnd) decoded = decoded.split(/[?#\0]/)[0]!;
  const segments: string[] = [];
  for (const raw of decoded.toLowerCase().split(/[/\\]/)) {
    const segment = raw.trim();
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return segments;
}
