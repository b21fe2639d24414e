import { randomBytes } from 'node:crypto';
import request from 'supertest';
import type { Express } from 'express';
import { createInternalApp, createPublicApp } from '../../src/app';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { createDb } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import {
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Drives the service through accepted, refused and failing requests with every kind of secret
 * in them, at the most verbose log level, and then searches everything that was logged.
 */

const secret = (label: string): string => `${label}${randomBytes(9).toString('hex')}`;

const API_TOKEN = secret('apitoken');
const WRONG_BEARER = secret('wrongbearer');
const FORM_BODY = secret('formbody');
const JSON_BODY = secret('jsonbody');
const QUERY_BODY = secret('querybody');
const BAD_SIGNATURE = secret('badsignature');
const BAD_TWILIO_SIGNATURE = secret('badtwiliosig');
const BASIC_PASSWORD = secret('basicpassword');
const DB_PASSWORD = secret('dbpassword');
const GARBAGE_TOKEN = secret('garbagetoken');
const VALID_TOKEN = mintCallbackToken([TEST_TOKEN_SECRET]).token;
// Well-formed, but signed with another secret: refused as a bad token.
const FORGED_TOKEN = mintCallbackToken(['another-secret-that-is-long-enough']).token;

const lines: string[] = [];
const secrets = new Map<string, string>();
let t: TestApp;
let publicApp: Express;
let internalApp: Express;
let brokenPublic: Express;
let brokenInternal: Express;
let brokenDb: ReturnType<typeof createDb>;

beforeAll(async () => {
  t = await createTestApp({ API_TOKENS: API_TOKEN });
  const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
  publicApp = createPublicApp({ ...t.deps, logger });
  internalApp = createInternalApp({ ...t.deps, logger });
  // The same service with its database unreachable: the 503 and 500 paths log errors.
  brokenDb = createDb(`postgres://sw:${DB_PASSWORD}@127.0.0.1:9/nowhere`, 1);
  const broken = { ...t.deps, logger, db: brokenDb.db, recorder: directRecorder(brokenDb.db) };
  brokenPublic = createPublicApp(broken);
  brokenInternal = createInternalApp(broken);
});
afterAll(async () => {
  await brokenDb.db.destroy();
  await t.close();
});

function signedForm(app: Express, path: string, fields: Record<string, string>) {
  return request(app)
    .post(path)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .set(
      'X-SignalWire-Signature',
      track(
        'valid form signature',
        signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, Object.entries(fields)),
      ),
    )
    .send(new URLSearchParams(fields).toString());
}

function signedJson(app: Express, path: string, fields: Record<string, unknown>) {
  const body = JSON.stringify(fields);
  return request(app)
    .post(path)
    .set('Content-Type', 'application/json')
    .set(
      'X-SignalWire-Signature',
      track(
        'valid JSON signature',
        signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, body),
      ),
    )
    .send(body);
}

function track(what: string, value: string): string {
  secrets.set(`${what} (${value.slice(0, 6)}…)`, value);
  return value;
}

test('When requests carrying secrets succeed, fail and error at trace level, then no secret reaches the logs', async () => {
  const basic = `Basic ${Buffer.from(`project:${BASIC_PASSWORD}`).toString('base64')}`;
  track('basic credentials', basic.slice('Basic '.length));

  // Accepted callbacks: signed form, signed JSON, and a valid token in the path.
  await signedForm(publicApp, '/callbacks/cxml', cxmlFields({ Body: FORM_BODY })).expect(200);
  await signedJson(publicApp, '/callbacks/native', nativeFields({ body: JSON_BODY })).expect(200);
  await request(publicApp)
    .post(`/callbacks/native/${VALID_TOKEN}`)
    .set('Content-Type', 'application/json')
    .set('Authorization', basic)
    .send(nativeFields({ body: JSON_BODY }))
    .expect(200);

  // Refused callbacks: bad signatures (both headers), bad and forged tokens, no credentials.
  await request(publicApp)
    .post('/callbacks/cxml')
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .set('X-SignalWire-Signature', BAD_SIGNATURE)
    .send(new URLSearchParams(cxmlFields({ Body: FORM_BODY })).toString())
    .expect(403);
  await request(publicApp)
    .post('/callbacks/cxml')
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .set('X-Twilio-Signature', BAD_TWILIO_SIGNATURE)
    .set('Authorization', basic)
    .send(new URLSearchParams(cxmlFields({ Body: FORM_BODY })).toString())
    .expect(403);
  await request(publicApp)
    .get(`/callbacks/cxml/${FORGED_TOKEN}`)
    .query(cxmlFields({ Body: QUERY_BODY }))
    .set('X-SignalWire-Signature', BAD_SIGNATURE)
    .expect(403);
  await request(publicApp)
    .post(`/callbacks/native/${GARBAGE_TOKEN}`)
    .set('Content-Type', 'application/json')
    .send(nativeFields({ body: JSON_BODY }))
    .expect(403);
  await request(publicApp)
    .post(`/callbacks/cxml/${FORGED_TOKEN}`)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(new URLSearchParams(cxmlFields({ Body: FORM_BODY })).toString())
    .expect(403);
  await request(publicApp)
    .post('/callbacks/native')
    .set('Content-Type', 'application/json')
    .send(nativeFields({ body: JSON_BODY }))
    .expect(401);

  // Bad input with the body in it: malformed JSON, a wrong content type, a missing field.
  await request(publicApp)
    .post(`/callbacks/native/${VALID_TOKEN}`)
    .set('Content-Type', 'application/json')
    .send(`{"body": "${JSON_BODY}", `)
    .expect(400);
  await request(publicApp)
    .post(`/callbacks/native/${VALID_TOKEN}`)
    .set('Content-Type', 'text/plain')
    .send(JSON_BODY)
    .expect(415);
  await signedForm(publicApp, `/callbacks/cxml/${VALID_TOKEN}`, { Body: FORM_BODY }).expect(400);
  // The routes are case-insensitive, as Express's are: so is the masking of their token.
  await request(publicApp)
    .post(`/Callbacks/NATIVE/${VALID_TOKEN}`)
    .set('Content-Type', 'text/plain')
    .send(JSON_BODY)
    .expect(415);

  // The query API: a wrong token, then the right one.
  await request(internalApp).get('/v1/messages').auth(WRONG_BEARER, { type: 'bearer' }).expect(401);
  await request(internalApp).get('/v1/messages').auth(API_TOKEN, { type: 'bearer' }).expect(200);

  // The database is unreachable: callbacks and the query API get 503, both logged.
  await signedForm(
    brokenPublic,
    `/callbacks/cxml/${VALID_TOKEN}`,
    cxmlFields({ Body: FORM_BODY }),
  ).expect(503);
  await signedJson(brokenPublic, '/callbacks/native', nativeFields({ body: JSON_BODY })).expect(
    503,
  );
  await request(brokenInternal).get('/v1/messages').auth(API_TOKEN, { type: 'bearer' }).expect(503);

  const logged = lines.join('');
  // The capture works and covered the interesting paths.
  expect(logged).toContain('"msg":"request"');
  expect(logged).toContain('callback refused');
  expect(logged).toContain('callback could not be made durable');
  expect(logged).toContain('database unavailable: answered 503');
  expect(logged).toContain('/callbacks/native/[token]');
  // The refusal names each URL the signature was checked against: with and without :443.
  const refusals = lines
    .map((line) => JSON.parse(line) as { msg: string; candidate_urls?: string[] })
    .filter((entry) => entry.msg === 'callback refused' && entry.candidate_urls);
  expect(refusals.length).toBeGreaterThan(0);
  for (const { candidate_urls: urls } of refusals) {
    expect(new Set(urls).size).toBe(urls!.length);
    expect(urls).toContainEqual(expect.stringMatching(/^https:\/\/hooks\.example\.com:443\//));
  }

  const values: Record<string, string> = {
    'API bearer token': API_TOKEN,
    'wrong bearer token': WRONG_BEARER,
    'form Body': FORM_BODY,
    'JSON body': JSON_BODY,
    'Body in a query string': QUERY_BODY,
    'bad X-SignalWire-Signature': BAD_SIGNATURE,
    'bad X-Twilio-Signature': BAD_TWILIO_SIGNATURE,
    'Basic auth password': BASIC_PASSWORD,
    'database password': DB_PASSWORD,
    'garbage callback token': GARBAGE_TOKEN,
    'valid callback token': VALID_TOKEN,
    'valid callback token MAC': VALID_TOKEN.split('.')[1]!,
    'forged callback token': FORGED_TOKEN,
    'signing key': TEST_SIGNING_KEY,
    'callback token secret': TEST_TOKEN_SECRET,
    ...Object.fromEntries(secrets),
  };
  const leaked = Object.entries(values)
    .filter(([, value]) => logged.includes(value))
    .map(([what]) => what);
  expect(leaked).toEqual([]);
});
