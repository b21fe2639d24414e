import express from 'express';
import request from 'supertest';
import { loadConfig } from '../../src/config';
import { bearerAuth } from '../../src/http/bearer-auth';

/**
 * A client presents its token as `Authorization: Bearer <token>`: bearer-auth.ts reads it up to
 * the first white space, and header bytes are read one per character (latin1). A token with
 * white space inside (`correct horse battery staple`, a pasted line break, a no-break space), a
 * control character, or a character beyond U+00FF can never be presented: every dashboard would
 * get 401 with nothing naming the cause. Start-up refuses it instead, by the variable's name and
 * without its value (DESIGN §7: fail fast, clearly). A Latin-1 token (é, ö, ß) can be presented,
 * and is taken.
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
  ['a no-break space inside', 'correct\u00a0horse\u00a0battery'],
  ['a control character', 'a-good-token-0123\u0007456789'],
  ['a character beyond U+00FF', 'token€token€token€token'],
])('When API_TOKENS holds a token with %s, then start-up refuses it', (_what, token) => {
  for (const env of [PRODUCTION, {}]) {
    expect(() => loadConfig({ ...env, API_TOKENS: `a-good-token-0123456789,${token}` })).toThrow(
      /API_TOKENS: a token may hold no white space/,
    );
    try {
      loadConfig({ ...env, API_TOKENS: token });
    } catch (error) {
      expect(String(error)).not.toContain(token);
    }
  }
});

test('When API_TOKENS holds tokens of visible ASCII or Latin-1, then start-up takes them', () => {
  const config = loadConfig({
    ...PRODUCTION,
    API_TOKENS: ' a-good-token-0123456789 , ~!#$%&*+/=?^_`{|}-0123 , tökentökentökentöken ',
  });
  expect(config.apiTokens).toEqual([
    'a-good-token-0123456789',
    '~!#$%&*+/=?^_`{|}-0123',
    'tökentökentökentöken',
  ]);
});

test('When a dashboard presents a Latin-1 token, then it is let in', async () => {
  const token = 'tökentökentökentöken';
  const app = express();
  app.get('/x', bearerAuth([token]), (_req, res) => void res.send('ok'));
  await request(app).get('/x').set('Authorization', `Bearer ${token}`).expect(200);
});
