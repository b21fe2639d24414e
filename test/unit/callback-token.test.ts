import { createHmac } from 'node:crypto';
import {
  mintCallbackToken,
  tokenExpired,
  verifyCallbackToken,
} from '../../src/callbacks/callback-token';

const secretA = 'first-secret-0123456789abcdef';
const secretB = 'second-secret-0123456789abcdef';

/** A token in the format minted before mint times existed: `ref.mac`, mac over the ref alone. */
function legacyToken(secret: string, ref: string): string {
  return `${ref}.${createHmac('sha256', secret).update(ref).digest('base64url')}`;
}

describe('callback tokens', () => {
  test('When a token is minted, then it is one URL-safe path segment that verifies to its ref and mint time', () => {
    const now = new Date('2026-11-30T12:00:00Z');
    const { token, ref } = mintCallbackToken([secretA], now);
    expect(token).toMatch(/^[A-Za-z0-9_-]{16}\.[0-9a-z]+\.[A-Za-z0-9_-]{43}$/);
    expect(encodeURIComponent(token)).toBe(token);
    expect(verifyCallbackToken([secretA], token)).toEqual({ ref, mintedAt: now });
  });

  test('When secrets rotate, then the first mints and every listed secret verifies', () => {
    const old = mintCallbackToken([secretA]);
    const fresh = mintCallbackToken([secretB, secretA]);
    expect(verifyCallbackToken([secretB, secretA], old.token)?.ref).toBe(old.ref);
    expect(verifyCallbackToken([secretA], fresh.token)).toBeNull();
    expect(verifyCallbackToken([secretB], fresh.token)?.ref).toBe(fresh.ref);
  });

  test('When a token is forged or altered, then it does not verify', () => {
    const { token, ref } = mintCallbackToken([secretA]);
    const [, minted, mac] = token.split('.') as [string, string, string];
    const otherRef = ref.slice(0, -1) + (ref.endsWith('A') ? 'B' : 'A');
    expect(verifyCallbackToken([secretA], `${otherRef}.${minted}.${mac}`)).toBeNull();
    // A later mint time (to escape expiry) breaks the MAC.
    const later = (parseInt(minted, 36) + 86_400 * 365).toString(36);
    expect(verifyCallbackToken([secretA], `${ref}.${later}.${mac}`)).toBeNull();
    expect(verifyCallbackToken([secretA], `${ref}.${minted}.${'A'.repeat(43)}`)).toBeNull();
    // Dropping the mint time does not turn it into a legacy token.
    expect(verifyCallbackToken([secretA], `${ref}.${mac}`)).toBeNull();
    expect(verifyCallbackToken([secretA], 'not-a-token')).toBeNull();
    expect(verifyCallbackToken([secretA], '')).toBeNull();
    expect(verifyCallbackToken([secretB], token)).toBeNull();
  });

  test('When the last character of a token is spelled another way that decodes to the same bytes, then it does not verify: a token has one spelling', () => {
    // 43 base64url characters carry 258 bits for the MAC's 256: the last one's two low bits are
    // unused, so four characters decode alike. One spelling, or a token is not one identifier.
    const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (const minted of [
      mintCallbackToken([secretA]),
      { token: legacyToken(secretA, 'r'.repeat(16)) },
    ]) {
      const last = BASE64URL.indexOf(minted.token.slice(-1));
      const others = [1, 2, 3].map((bits) => BASE64URL[(last & ~3) | ((last + bits) & 3)]!);
      for (const other of others) {
        const respelled = minted.token.slice(0, -1) + other;
        expect(Buffer.from(respelled.split('.').at(-1)!, 'base64url')).toEqual(
          Buffer.from(minted.token.split('.').at(-1)!, 'base64url'),
        );
        expect(verifyCallbackToken([secretA], respelled)).toBeNull();
      }
      expect(verifyCallbackToken([secretA], minted.token)).not.toBeNull();
    }
  });

  test('When a legacy token (no mint time) is presented, then it verifies without a mint time', () => {
    const ref = 'AAAAbbbbCCCCdddd';
    expect(verifyCallbackToken([secretA], legacyToken(secretA, ref))).toEqual({
      ref,
      mintedAt: null,
    });
    expect(verifyCallbackToken([secretB], legacyToken(secretA, ref))).toBeNull();
  });

  test('When a token is older than the TTL, then it is expired; a legacy token never is', () => {
    const minted = new Date('2026-01-01T00:00:00Z');
    const token = verifyCallbackToken([secretA], mintCallbackToken([secretA], minted).token)!;
    expect(tokenExpired(token, 30, new Date('2026-01-30T23:59:00Z'))).toBe(false);
    expect(tokenExpired(token, 30, new Date('2026-01-31T00:01:00Z'))).toBe(true);
    expect(tokenExpired({ ref: 'r', mintedAt: null }, 30, new Date('2099-01-01'))).toBe(false);
  });

  test('When two tokens are minted, then their refs differ', () => {
    const refs = new Set(Array.from({ length: 100 }, () => mintCallbackToken([secretA]).ref));
    expect(refs.size).toBe(100);
  });
});
