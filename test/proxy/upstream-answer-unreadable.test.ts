import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { curlDataUrlencode, startUpstreamTap } from './support';
import type { CannedResponse, TappedRequest, UpstreamTap } from './support';

/**
 * What SignalWire (or a gateway in front of it) answers to a create it accepted never becomes an
 * error for the caller — its client would count the send as failed and send it again
 * (proxy.service.ts, record()). An answer nested 200 000 deep overflowed the stack while its
 * first event was made, and the caller got 500 for a message SignalWire had sent.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const AUTH = basicAuthHeader(PROJECT, 'PTreviewtoken');
const COMPAT_PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;
const SID = '0a059168-ead0-41af-9d1f-343dae832527';

describe('a 2xx answer the proxy cannot make a first event of', () => {
  let next: (req: TappedRequest) => CannedResponse;
  let tap: UpstreamTap;
  let t: TestApp;

  beforeAll(async () => {
    tap = await startUpstreamTap((req) => next(req));
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
  });

  afterAll(async () => {
    await t.close();
    await tap.close();
  });

  it('When SignalWire’s 201 carries a deeply nested field (well under the 1 MiB answer limit), then the caller still gets the 201 (it was sent), not a 500 that invites a second send', async () => {
    const depth = 200_000;
    const body =
      `{"sid":"${SID}","account_sid":"${PROJECT}","status":"queued","to":"+15557650000",` +
      `"from":"+15551234567","extra":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    expect(body.length).toBeLessThan(1024 * 1024);
    next = () => ({ status: 201, headers: { 'content-type': 'application/json' }, body });

    const res = await request(t.internalApp)
      .post(COMPAT_PATH)
      .set('Authorization', AUTH)
      .type('form')
      .send(
        curlDataUrlencode([
          ['To', '+15557650000'],
          ['From', '+15551234567'],
          ['Body', 'x'],
        ]),
      );

    expect(tap.requests).toHaveLength(1);
    expect({ status: res.status, sid: (res.body as { sid?: string }).sid }).toEqual({
      status: 201,
      sid: SID,
    });
    // Not recorded (its callbacks, authenticated by the token, will create the message), and
    // counted so (sw_status_proxy_unrecorded_sends_total).
    const stored = await request(t.internalApp)
      .get(`/v1/messages/${SID}`)
      .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
    expect(stored.status).toBe(404);
    const metrics = await request(t.internalApp).get('/metrics');
    expect(metrics.text).toMatch(/^sw_status_proxy_unrecorded_sends_total\{api="cxml"\} 1$/m);
  });
});
