// Edge cases of src/callbacks/callback-token.ts: each test kills mutants that
// survived test/unit/callback-token.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import { createHmac } from 'node:crypto';
import {
  hasTokenShape,
  mintCallbackToken,
  tokenExpired,
  verifyCallbackToken,
} from '../../src/callbacks/callback-token';

const secret = 'secret-a-0123456789';
const legacyToken = (ref: string) =>
  `${ref}.${createHmac('sha256', secret).update(ref).digest('base64url')}`;

describe('callback tokens (edge cases)', () => {
  test('When no usable secret is configured (none, or an empty one), then minting refuses', () => {
    expect(() => mintCallbackToken([])).toThrow('no callback token secret configured');
    // An empty secret would mint tokens anyone can forge (HMAC with an empty key).
    expect(() => mintCallbackToken([''])).toThrow('no callback token secret configured');
  });

  test('When a valid token is embedded in a longer segment, then it neither verifies nor has a token shape', () => {
    const { token } = mintCallbackToken([secret]);
    const legacy = legacyToken('r'.repeat(16));
    expect(verifyCallbackToken([secret], token)).not.toBeNull();
    expect(verifyCallbackToken([secret], legacy)).not.toBeNull();
    for (const t of [token, legacy]) {
      expect(verifyCallbackToken([secret], `x${t}`)).toBeNull();
      expect(verifyCallbackToken([secret], `${t}x`)).toBeNull();
      expect(hasTokenShape(`x${t}`)).toBe(false);
      expect(hasTokenShape(`${t}x`)).toBe(false);
    }
  });

  test('When a segment has a current or a legacy token shape, then hasTokenShape says so, whatever its MAC', () => {
    const { token } = mintCallbackToken([secret]);
    expect(hasTokenShape(token)).toBe(true);
    expect(hasTokenShape(legacyToken('r'.repeat(16)))).toBe(true);
    // Right shape, wrong MAC: still a token's shape.
    expect(hasTokenShape(`${'a'.repeat(16)}.${'b'.repeat(43)}`)).toBe(true);
    expect(hasTokenShape('cxml')).toBe(false);
    expect(hasTokenShape('')).toBe(false);
  });

  test('When a token is exactly CALLBACK_TOKEN_TTL_DAYS old, then it is not yet past its TTL', () => {
    const mintedAt = new Date('2026-01-01T00:00:00Z');
    expect(tokenExpired({ ref: 'r', mintedAt }, 30, new Date('2026-01-31T00:00:00Z'))).toBe(false);
    expect(tokenExpired({ ref: 'r', mintedAt }, 30, new Date('2026-01-31T00:00:00.001Z'))).toBe(
      true,
    );
  });
});
