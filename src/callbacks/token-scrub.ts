import type { Request } from 'express';
import type { StatusEvent } from '../messages/status-event';

/**
 * A callback that came by its per-send token with that token in its body: SignalWire echoing
 * the status callback URL it was given (the create's answer does, as `status_callback_url`;
 * callbacks "may gain fields without notice", SIGNALWIRE.md). The token authenticates
 * callbacks for its message, so it must appear in no stored payload and in nothing relayed to
 * the caller's own callback (DESIGN §2): it is replaced there with `[token]` (percent-encoded
 * in a form body), as in the proxy's answers. The relay signs what it sends afresh.
 */
export function scrubToken(event: StatusEvent, token: string, req: Request): void {
  // The common case, costing one search of the bytes received: no token in them.
  if (token === '' || !received(req).includes(token)) return;
  event.raw = scrubbed(event.raw, token) as Record<string, unknown>;
  const relay = event.relay;
  if (relay === undefined) return;
  const body = Buffer.from(relay.body, 'base64');
  const needle = Buffer.from(token);
  if (body.indexOf(needle) === -1) return;
  const form = relay.method === 'GET' || /x-www-form-urlencoded/i.test(relay.contentType ?? '');
  const replacement = Buffer.from(form ? '%5Btoken%5D' : '[token]');
  event.relay = { ...relay, body: replaceAll(body, needle, replacement).toString('base64') };
}

/** What SignalWire sent besides the URL's path: the body, or a GET's query. */
function received(req: Request): Buffer | string {
  if (req.method === 'GET') {
    const at = req.originalUrl.indexOf('?');
    return at === -1 ? '' : req.originalUrl.slice(at + 1);
  }
  return Buffer.isBuffer(req.body) ? req.body : '';
}

function scrubbed(value: unknown, token: string): unknown {
  if (typeof value === 'string') return value.replaceAll(token, '[token]');
  if (Array.isArray(value)) return value.map((item) => scrubbed(item, token));
  if (typeof value !== 'object' || value === null) return value;
  const clean: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    Object.defineProperty(clean, key.replaceAll(token, '[token]'), {
      value: scrubbed(inner, token),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return clean;
}

function replaceAll(haystack: Buffer, needle: Buffer, replacement: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, from)) {
    parts.push(haystack.subarray(from, at), replacement);
    from = at + needle.length;
  }
  parts.push(haystack.subarray(from));
  return Buffer.concat(parts);
}
