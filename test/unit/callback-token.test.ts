import { mintCallbackToken, verifyCallbackToken } from '../../src/callbacks/callback-token';

const secretA = 'first-secret-0123456789abcdef';
const secretB = 'second-secret-0123456789abcdef';

describe('callback tokens', () => {
  test('When a token is minted, then it is one URL-safe path segment that verifies to its ref', () => {
    const { token, ref } = mintCallbackToken([secretA]);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(encodeURIComponent(token)).toBe(token);
    expect(verifyCallbackToken([secretA], token)).toBe(ref);
  });

  test('When secrets rotate, then the first mints and every listed secret verifies', () => {
    const old = mintCallbackToken([secretA]);
    const fresh = mintCallbackToken([secretB, secretA]);
    expect(verifyCallbackToken([secretB, secretA], old.token)).toBe(old.ref);
    expect(verifyCallbackToken([secretA], fresh.token)).toBeNull();
    expect(verifyCallbackToken([secretB], fresh.token)).toBe(fresh.ref);
  });

  test('When a token is forged or altered, then it does not verify', () => {
    const { token, ref } = mintCallbackToken([secretA]);
    const [, mac] = token.split('.');
    const otherRef = ref.slice(0, -1) + (ref.endsWith('A') ? 'B' : 'A');
    expect(verifyCallbackToken([secretA], `${otherRef}.${mac}`)).toBeNull();
    expect(verifyCallbackToken([secretA], `${ref}.${'A'.repeat(43)}`)).toBeNull();
    expect(verifyCallbackToken([secretA], 'not-a-token')).toBeNull();
    expect(verifyCallbackToken([secretA], '')).toBeNull();
    expect(verifyCallbackToken([secretB], token)).toBeNull();
  });

  test('When two tokens are minted, then their refs differ', () => {
    const refs = new Set(Array.from({ length: 100 }, () => mintCallbackToken([secretA]).ref));
    expect(refs.size).toBe(100);
  });
});
