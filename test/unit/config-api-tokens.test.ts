import { loadConfig } from '../../src/config';

/**
 * A token with white space inside (`correct horse battery staple`, a pasted value with a line
 * break) or characters outside visible ASCII can never be presented: bearer-auth.ts reads
 * `Bearer (\S+)`, and a header value is read as latin1 while the configured token is hashed as
 * UTF-8. Every dashboard would get 401 with nothing naming the cause; start-up refuses it
 * instead, by the variable's name and without its value (DESIGN §7: fail fast, clearly).
 */

const PRODUCTION = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://sw:pw@db.internal:5432/sw',
  SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com',
  SIGNALWIRE_SIGNING_KEYS: 'PSK_production_key_0123456789',
  CALLBACK_TOKEN_SECRET: 'a-production-callback-secret-0123',
  PUBLIC_BASE_URL: 'https://hooks.example.com',
};

test.each([
  ['white space inside', 'correct horse battery staple'],
  ['a non-ASCII character', 'tökentökentökentöken'],
])('When API_TOKENS holds a token with %s, then start-up refuses it', (_what, token) => {
  for (const env of [PRODUCTION, {}]) {
    expect(() => loadConfig({ ...env, API_TOKENS: `a-good-token-0123456789,${token}` })).toThrow(
      /API_TOKENS: a token may hold only visible ASCII/,
    );
    try {
      loadConfig({ ...env, API_TOKENS: token });
    } catch (error) {
      expect(String(error)).not.toContain(token);
    }
  }
});

test('When API_TOKENS holds tokens of visible ASCII, then start-up takes them', () => {
  const config = loadConfig({
    ...PRODUCTION,
    API_TOKENS: ' a-good-token-0123456789 , ~!#$%&*+/=?^_`{|}-0123 ',
  });
  expect(config.apiTokens).toEqual(['a-good-token-0123456789', '~!#$%&*+/=?^_`{|}-0123']);
});
