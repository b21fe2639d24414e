import type { Request } from 'express';
import { mapStrings } from '../messages/map-strings';
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
  const masked = (text: string): string => text.replaceAll(token, '[token]');
  event.raw = mapStrings(event.raw, masked) as StatusEvent['raw'];
  const relay = event.relay;
  if (relay === undefined) return;
  // latin1 maps each byte to one character and back: the bytes around the (ASCII) token stay.
  const body = Buffer.from(relay.body, 'base64').toString('latin1');
  if (!body.includes(token)) return;
  const form = relay.method === 'GET' || /x-www-form-urlencoded/i.test(relay.contentType ?? '');
  const scrubbedBody = body.replaceAll(token, form ? '%5Btoken%5D' : '[token]');
  event.relay = { ...relay, body: Buffer.from(scrubbedBody, 'latin1').toString('base64') };
}

/** What SignalWire sent besides the URL's path: the body, or a GET's query. */
function received(req: Request): Buffer | string {
  if (req.method === 'GET') {
    const at = req.originalUrl.indexOf('?');
    return at === -1 ? '' : req.originalUrl.slice(at + 1);
  }
  return Buffer.isBuffer(req.body) ? req.body : '';
}
