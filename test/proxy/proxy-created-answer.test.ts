import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { checkAnswer, openApiDocument } from '../helpers/openapi';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The send proxy's success answer in the OpenAPI document: SignalWire's 201 (the compatibility
 * Message resource of seed 004, the native create answer of seeds 001/003), declared with its
 * schema so that a generated client reads it as data, not as an error (openapi-fetch counts
 * `default` among the errors). The simulator plays SignalWire; every answer a test gets is also
 * checked against the document (test/helpers/openapi-setup.ts).
 */

const PROJECT = 'a1b2c3d4-e5f6-4890-abcd-ef1234567890';
const AUTH = basicAuthHeader(PROJECT, 'PTcreatedanswertesttoken');
const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

let sim: RunningSimulator;
let t: TestApp;
beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: sim.url });
});
afterAll(async () => {
  await t.close();
  await sim.close();
});

const compatForm = 'To=%2B15551231000&From=%2B15559876543&Body=hi';
const compatJson = JSON.stringify({ To: '+15551231000', From: '+15559876543', Body: 'hi' });
const nativeJson = JSON.stringify({ to: '+15551231000', from: '+15559876543', body: 'hi' });

const COMPAT_PATHS = [
  '/api/laml/2010-04-01/Accounts/{accountSid}/Messages',
  '/api/laml/2010-04-01/Accounts/{accountSid}/Messages.json',
  '/2010-04-01/Accounts/{accountSid}/Messages',
  '/2010-04-01/Accounts/{accountSid}/Messages.json',
];
const NATIVE_PATH = '/api/messaging/messages';

/** The schema the document gives a send operation's 201 JSON answer, by component name. */
function createdSchemaOf(path: string): string | undefined {
  const responses = openApiDocument().paths![path]!.post!.responses as Record<
    string,
    { content?: Record<string, { schema?: { $ref?: string } }> }
  >;
  return responses['201']?.content?.['application/json']?.schema?.$ref;
}

describe('the send proxy’s success answer', () => {
  test.each([
    ...COMPAT_PATHS.flatMap((path) => [
      [path, FORM, compatForm, 'CompatibilityMessage'] as const,
      [path, JSON_TYPE, compatJson, 'CompatibilityMessage'] as const,
    ]),
    [NATIVE_PATH, JSON_TYPE, nativeJson, 'NativeMessage'] as const,
  ])(
    'When %s (%s) is sent and SignalWire creates the message, then its 201 is the one 2xx the document declares, with SignalWire’s resource as its schema',
    async (path, type, body, schema) => {
      const res = await request(t.internalApp)
        .post(path.replace('{accountSid}', PROJECT))
        .set('Authorization', AUTH)
        .set('Content-Type', type)
        .send(body);
      expect(res.status).toBe(201);
      const responses = openApiDocument().paths![path]!.post!.responses as object;
      expect([
        path,
        Object.keys(responses).filter((status) => /^2/.test(status)),
        createdSchemaOf(path),
      ]).toEqual([path, ['201'], `#/components/schemas/${schema}`]);
      // Upstream errors keep their own description.
      expect(Object.keys(responses)).toContain('default');
    },
  );

  const created = (path: string, body: unknown) =>
    checkAnswer({
      listener: 'internal',
      method: 'POST',
      url: path.replace('{accountSid}', PROJECT),
      status: 201,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(body)),
    });

  test('When SignalWire answers a create with fields the document does not name, then the answer still matches it; without its id or status, it does not', () => {
    const compatPath = COMPAT_PATHS[1]!;
    // Twilio's spellings, which the compatibility API mirrors: counts and price as strings,
    // error codes as numbers.
    const compat = {
      sid: '0a059168-ead0-41af-9d1f-343dae832527',
      status: 'queued',
      num_segments: '1',
      price: '-0.00750',
      error_code: 30003,
      a_field_added_later: { any: 'thing' },
    };
    const native = {
      id: 'c2d3e4f5-a6b7-8901-cdef-234567890abc',
      status: 'queued',
      status_callback_url: null,
      a_field_added_later: 1,
    };
    expect(created(compatPath, compat)).toBeNull();
    expect(created(NATIVE_PATH, native)).toBeNull();
    const { sid: _sid, ...withoutSid } = compat;
    const { status: _status, ...withoutStatus } = native;
    expect(created(compatPath, withoutSid)).toMatch(/required/);
    expect(created(NATIVE_PATH, withoutStatus)).toMatch(/required/);
    expect(created(NATIVE_PATH, { ...native, number_of_segments: [1] })).toMatch(/type/);
  });
});
