import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Per-send callback tokens (DESIGN §2): `ref.minted.mac`, where ref is random, minted is the
 * mint time (seconds since the epoch, base 36) and mac = base64url(HMAC-SHA256(secret,
 * `ref.minted`)). One URL-safe path segment that authenticates a callback even where
 * SignalWire does not sign it, names the send it belongs to, and expires.
 * Several secrets: the first mints, all verify, because receipts can arrive days later.
 *
 * Tokens minted before mint times existed (`ref.mac`, mac = HMAC-SHA256(secret, ref)) still
 * verify, as `legacy`: they are in flight for days after an upgrade, but carry no age, so they
 * may only write to a message already bound to their ref, never bind a new one (enforced with
 * the write, messages/record-events.ts). The two MAC inputs cannot collide: a legacy input is
 * 16 characters without a dot, a current one always has a dot.
 */

const REF_BYTES = 12;
const TOKEN = /^([A-Za-z0-9_-]{16})\.([0-9a-z]{1,10})\.([A-Za-z0-9_-]{43})$/;
const LEGACY_TOKEN = /^([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;
const DAY_MS = 86_400_000;

export interface MintedToken {
  token: string;
  ref: string;
}

export interface VerifiedToken {
  ref: string;
  /** When it was minted; null for a legacy token, which has no mint time. */
  mintedAt: Date | null;
}

export function mintCallbackToken(secrets: readonly string[], now: Date = new Date()): MintedToken {
  const secret = secrets[0];
  if (!secret) throw new Error('no callback token secret configured');
  const ref = randomBytes(REF_BYTES).toString('base64url');
  const signed = `${ref}.${Math.floor(now.getTime() / 1000).toString(36)}`;
  return { token: `${signed}.${mac(secret, signed)}`, ref };
}

/** The token's ref and mint time when one of the secrets signed it, otherwise null. */
export function verifyCallbackToken(
  secrets: readonly string[],
  token: string,
): VerifiedToken | null {
  const current = TOKEN.exec(token);
  if (current) {
    const [, ref, minted, given] = current as unknown as [string, string, string, string];
    if (!signedByAny(secrets, `${ref}.${minted}`, given)) return null;
    return { ref, mintedAt: new Date(parseInt(minted, 36) * 1000) };
  }
  const legacy = LEGACY_TOKEN.exec(token);
  if (legacy) {
    const [, ref, given] = legacy as unknown as [string, string, string];
    return signedByAny(secrets, ref, given) ? { ref, mintedAt: null } : null;
  }
  return null;
}

/**
 * Whether a path segment has a token's shape (current or legacy), whatever its MAC says: the
 * only segments that may fall back to a signature (src/callbacks/callbacks.routes.ts).
 */
export function hasTokenShape(segment: string): boolean {
  return TOKEN.test(segment) || LEGACY_TOKEN.test(segment);
}

/** Whether a token is past CALLBACK_TOKEN_TTL_DAYS. A legacy token never expires by age. */
export function tokenExpired(
  token: VerifiedToken,
  ttlDays: number,
  now: Date = new Date(),
): boolean {
  return token.mintedAt !== null && now.getTime() - token.mintedAt.getTime() > ttlDays * DAY_MS;
}

function signedByAny(secrets: readonly string[], signed: string, given: string): boolean {
  // The MAC's text, not its decoded bytes: 43 base64url characters hold 258 bits for 256, so
  // four spellings of the last character decode alike, and a token must have one spelling.
  const givenBytes = Buffer.from(given, 'latin1');
  let valid = false;
  // Check every secret (no early exit) so timing does not tell which one matched.
  for (const secret of secrets) {
    const expected = Buffer.from(mac(secret, signed), 'latin1');
    if (expected.length === givenBytes.length && timingSafeEqual(expected, givenBytes))
      valid = true;
  }
  return valid;
}

function mac(secret: string, signed: string): string {
  return createHmac('sha256', secret).update(signed).digest('base64url');
}
