import type { Request } from 'express';
import type { RelayPayload } from '../messages/status-event';
import { signingKeyRef } from '../signalwire/signing';

/**
 * What relaying a callback to the caller's own status callback needs (DESIGN §10): the
 * request exactly as SignalWire made it — the body bytes and their Content-Type, or a GET's
 * query — and a reference to the key that verified its signature (none when a token
 * authenticated it: the relay then signs with the key of the message's project, or one bound to
 * no project, or none: signing.ts relaySigningKey).
 */
export function relayPayloadOf(
  req: Request,
  signingKeys: readonly string[],
  verifiedKeyIndex: number | undefined,
): RelayPayload {
  const key = verifiedKeyIndex === undefined ? undefined : signingKeys[verifiedKeyIndex];
  const keyRef = key === undefined ? null : signingKeyRef(key);
  if (req.method === 'GET') {
    const at = req.originalUrl.indexOf('?');
    const query = at === -1 ? '' : req.originalUrl.slice(at + 1);
    return {
      method: 'GET',
      contentType: null,
      body: Buffer.from(query).toString('base64'),
      keyRef,
    };
  }
  const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  return {
    method: 'POST',
    contentType: req.headers['content-type'] ?? null,
    body: raw.toString('base64'),
    keyRef,
  };
}
