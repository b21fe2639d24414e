import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Per-send callback tokens (DESIGN §2): `ref.mac` where ref is random and
 * mac = base64url(HMAC-SHA256(secret, ref)). One URL-safe path segment that authenticates a
 * callback even where SignalWire does not sign it, and names the send it belongs to.
 * Several secrets: the first mints, all verify, because receipts can arrive days later.
 */

const REF_BYTES = 12;
const TOKEN = /^([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;

export interface MintedToken {
  token: string;
  ref: string;
}

export function mintCallbackToken(secrets: readonly string[]): MintedToken {
  const secret = secrets[0];
  if (!secret) throw new Error('no callback token secret configured');
  const ref = randomBytes(REF_BYTES).toString('base64url');
  return { token: `${ref}.${mac(secret, ref)}`, ref };
}

/** Returns the token's ref when one of the secrets signed it, otherwise null. */
export function verifyCallbackToken(secrets: readonly string[], token: string): string | null {
  const match = TOKEN.exec(token);
  if (!match) return null;
  const [, ref, given] = match as unknown as [string, string, string];
  const givenBytes = Buffer.from(given, 'base64url');
  let valid = false;
  // Check every secret (no early exit) so timing does not tell which one matched.
  for (const secret of secrets) {
    const expected = Buffer.from(mac(secret, ref), 'base64url');
    if (expected.length === givenBytes.length && timingSafeEqual(expected, givenBytes))
      valid = true;
  }
  return valid ? ref : null;
}

function mac(secret: string, ref: string): string {
  return createHmac('sha256', secret).update(ref).digest('base64url');
}
