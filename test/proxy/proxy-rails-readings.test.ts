import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { rawRequest, startTappedProxy } from './support';
import type { CannedResponse, RawAnswer, TappedProxy, TappedRequest } from './support';

/**
 * What a create carries past the proxy is read upstream by SignalWire's Rails, not by the
 * proxy's parsers. Rails (ActionDispatch's query parser, Rack 2.2's rules) splits a query on
 * `;` as well as `&`, files `]status_callback`, `[status_callback` and `status_callback]` as
 * status_callback, and lets the query win over the body; it reads a JSON integer exactly, where
 * the proxy's re-serialised body would carry a rounded one. And a gateway that decodes the path
 * before it looks for the query reads `messages%3F…` as a create. None of these may go out.
 * (Found by the native proxy's read-only review.)
 */

const PROJECT = 'a1b2c3d4-e5f6-4890-abcd-ef1234567890';
const AUTH = basicAuthHeader(PROJECT, 'PTrailsreadingstoken');
const NATIVE = '/api/messaging/messages';
const COMPAT = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;
const OTHER = 'https%3A%2F%2Fother.example.com%2Fcb';
const FORM = 'To=%2B15551234567&From=%2B15559876543&Body=hello';

/** SignalWire answering every create: a native 201 echoing the send, or a compatibility one. */
function created(req: TappedRequest): CannedResponse {
  const json = { 'content-type': 'application/json' };
  if (req.path.includes('/Accounts/')) {
    return {
      status: 201,
      headers: json,
      body: JSON.stringify({ sid: '0a059168-ead0-41af-9d1f-343dae832527', status: 'queued' }),
    };
  }
  const sent = JSON.parse(req.body) as Record<string, unknown>;
  return {
    status: 201,
    headers: json,
    body: JSON.stringify({
      id: 'c2d3e4f5-a6b7-4901-8def-0123456789ab',
      from: sent['from'],
      to: sent['to'],
      status: 'queued',
      kind: 'sms',
      number_of_segments: 1,
      project_id: PROJECT,
      status_callback_url: sent['status_callback'] ?? null,
      created_at: '2026-02-25T15:30:00Z',
    }),
  };
}

let p: TappedProxy;

beforeAll(async () => {
  p = await startTappedProxy(created);
});

afterAll(async () => {
  await p.close();
});

const valid = { to: '+15551234567', from: '+15559876543', body: 'hello' };

function post(path: string, contentType: string, body: string): Promise<RawAnswer> {
  return rawRequest(p.proxy.port, {
    method: 'POST',
    path,
    headers: { authorization: AUTH, 'content-type': contentType },
    body,
  });
}

/** The answer, parsed, and what reached SignalWire while it was made. */
async function sent(request: () => Promise<RawAnswer>) {
  const before = p.tap.requests.length;
  const res = await request();
  return {
    status: res.status,
    answer: JSON.parse(res.body.toString('utf8')) as unknown,
    forwarded: p.tap.requests.slice(before).map((r) => `${r.method} ${r.path} ${r.body}`),
  };
}

describe('a callback field in the query string, as Rails reads it', () => {
  it.each([
    `?trace=1;status_callback=${OTHER}`,
    `?status_callback]=${OTHER}`,
    `?]status_callback=${OTHER}`,
    `?[status_callback=${OTHER}`,
    `?%5Dstatus_callback%5D%5D=${OTHER}`,
  ])(
    'When a native create’s query is %s (status_callback to Rails, and the query wins), then the answer is 422 on status_callback and nothing is forwarded',
    async (query) => {
      const outcome = await sent(() =>
        post(`${NATIVE}${query}`, 'application/json', JSON.stringify(valid)),
      );
      expect(outcome).toEqual({
        status: 422,
        answer: {
          errors: [
            expect.objectContaining({
              type: 'validation_error',
              code: 'invalid_parameter',
              attribute: 'status_callback',
              message: expect.stringMatching(/query string/),
            }),
          ],
        },
        forwarded: [],
      });
    },
  );

  it.each([
    { query: `?trace=1;StatusCallback=${OTHER}`, code: 21609 },
    { query: `?StatusCallback]=${OTHER}`, code: 21609 },
    { query: `?[StatusCallback=${OTHER}`, code: 21609 },
    { query: '?x=1;ApplicationSid=0a059168-ead0-41af-9d1f-343dae832527', code: 21218 },
  ])(
    'When a compatibility create’s query is $query, then the answer is 400 code $code and nothing is forwarded',
    async ({ query, code }) => {
      const outcome = await sent(() =>
        post(`${COMPAT}${query}`, 'application/x-www-form-urlencoded', FORM),
      );
      expect(outcome).toEqual({
        status: 400,
        answer: expect.objectContaining({
          code,
          status: 400,
          message: expect.stringMatching(/query string/),
        }),
        forwarded: [],
      });
    },
  );

  it('When the query carries ;-separated parameters that name no callback field, then the send goes through with the query unchanged', async () => {
    const query = '?trace=1;status=x&status_callback_note=1';
    const outcome = await sent(() =>
      post(`${NATIVE}${query}`, 'application/json', JSON.stringify(valid)),
    );
    expect(outcome.status).toBe(201);
    expect(p.tap.requests.at(-1)!.path).toBe(`${NATIVE}${query}`);
  });
});

describe('a callback field in a compatibility form, spelled so Rails files it as the field', () => {
  it.each([
    { key: 'StatusCallback]', code: 21609 },
    { key: ']StatusCallback', code: 21609 },
    { key: '[StatusCallback', code: 21609 },
    { key: 'ApplicationSid]]', code: 21218 },
  ])(
    'When the form carries $key= after StatusCallback= (the later one wins in Rails, displacing the proxy’s), then the answer is 400 code $code and nothing is forwarded',
    async ({ key, code }) => {
      const outcome = await sent(() =>
        post(
          COMPAT,
          'application/x-www-form-urlencoded',
          `${FORM}&StatusCallback=https%3A%2F%2Fapp.example.com%2Fcb&${encodeURIComponent(key)}=${OTHER}`,
        ),
      );
      expect(outcome).toEqual({
        status: 400,
        answer: expect.objectContaining({ code, status: 400 }),
        forwarded: [],
      });
      expect((outcome.answer as { message: string }).message).toContain(`'${key}'`);
    },
  );
});

describe('numbers in a JSON create go upstream as the caller sent them, or not at all', () => {
  it.each([
    { field: 'ref_number', json: '"ref_number":12345678901234567890' },
    { field: 'weight', json: '"weight":1e400' },
    { field: 'weight', json: '"weight":-1E+400' },
    { field: 'meta.ids[1]', json: '"meta":{"ids":[1,9007199254740993]}' },
    { field: 'ref', json: '"ref":1.2345678901234567e19' },
    { field: 'ref', json: '"ref":1152921504606846976.0' },
    { field: 'ref', json: '"ref":-9007199254740992' },
  ])(
    'When a native create holds $json (a number JSON.parse cannot hold as written), then the answer is 422 on $field and nothing is forwarded',
    async ({ field, json }) => {
      const raw = `{"to":"+15551234567","from":"+15559876543","body":"hello",${json}}`;
      const outcome = await sent(() => post(NATIVE, 'application/json', raw));
      expect(outcome).toEqual({
        status: 422,
        answer: {
          errors: [
            {
              type: 'validation_error',
              code: 'invalid_parameter',
              message: expect.stringContaining(`'${field}'`),
              attribute: field,
              url: 'https://developer.signalwire.com/rest/overview/error-codes/#invalid_parameter',
            },
          ],
        },
        forwarded: [],
      });
    },
  );

  it('When a compatibility JSON create holds an integer beyond 2^53, then the answer is 400 and nothing is forwarded', async () => {
    const raw =
      '{"To":"+15551234567","From":"+15559876543","Body":"hello","Ref":12345678901234567890}';
    const outcome = await sent(() => post(COMPAT, 'application/json', raw));
    expect(outcome).toEqual({
      status: 400,
      answer: expect.objectContaining({ code: 10000, status: 400 }),
      forwarded: [],
    });
  });

  it('When a native create’s numbers only change spelling on the way (1.10, 1E2, 2^53 − 1, 2.5e30, a string of digits), then the send goes through with the same numbers', async () => {
    const raw =
      '{"to":"+15551234567","from":"+15559876543","body":"hello","a":1.10,"b":1E2,"c":-9007199254740991,"d":"12345678901234567890","e":2.5e30}';
    const outcome = await sent(() => post(NATIVE, 'application/json', raw));
    expect(outcome.status).toBe(201);
    expect(JSON.parse(p.tap.requests.at(-1)!.body)).toMatchObject({
      a: 1.1,
      b: 100,
      c: -9007199254740991,
      d: '12345678901234567890',
      e: 2.5e30,
    });
  });
});

describe('a create spelled through an escaped query mark', () => {
  it.each([
    `${NATIVE}%3Fx=1`,
    `${NATIVE}%3Fx=1%2Fy`,
    `${NATIVE}%23`,
    `${NATIVE}%00`,
    `${NATIVE}%253F`,
  ])(
    'When a POST names %s (a gateway that decodes the path first reads a create), then it is refused 404 in the native shape and nothing is forwarded',
    async (path) => {
      const outcome = await sent(() =>
        post(
          path,
          'application/json',
          JSON.stringify({ ...valid, status_callback: 'https://app.example.com/cb' }),
        ),
      );
      expect(outcome).toEqual({
        status: 404,
        answer: { errors: [expect.objectContaining({ code: 'not_found' })] },
        forwarded: [],
      });
    },
  );
});
