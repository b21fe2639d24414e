import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sample, scrape } from '../ops/scrape';
import { closedPort, listenFirst } from './support';

/**
 * sw_status_http_server_errors_total is "Answers with a 5xx status of the service itself", and
 * SwStatusServerErrors (k8s/components/monitoring/prometheusrule.yaml) reads it for the proxy's
 * own errors too. The proxy answers those itself (src/proxy/proxy-http.ts fail()), past the
 * app's error handler that counts the rest: a send proxy failing every send must show there.
 * SignalWire's own 5xx, relayed as they came, and the 503 of a replica shutting down are not
 * the service's errors.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const AUTH = basicAuthHeader(PROJECT, 'PTreviewtoken');
const COMPAT_CREATE = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;

const serverErrors = async (t: TestApp) =>
  sample(await scrape(t.internalApp), 'sw_status_http_server_errors_total', {
    listener: 'internal',
    sender: 'authenticated',
  });

const compatCreate = (t: TestApp) =>
  request(t.internalApp)
    .post(COMPAT_CREATE)
    .set('Authorization', AUTH)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send('To=%2B15557650000&From=%2B15551234567&Body=x');

describe('SignalWire unreachable', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${await closedPort()}` });
  });
  afterAll(() => t.close());

  test('When the send proxy answers its own 502 (SignalWire unreachable), then sw_status_http_server_errors_total{listener="internal",sender="authenticated"} counts it', async () => {
    expect(await serverErrors(t)).toBe(0);

    const res = await compatCreate(t);
    expect(res.status).toBe(502);

    const text = await scrape(t.internalApp);
    // The upstream histogram saw it...
    expect(
      sample(text, 'sw_status_upstream_request_duration_seconds_count', {
        api: 'cxml',
        status: 'unreachable',
      }),
    ).toBe(1);
    // ...and so did the service's own-5xx counter, the one SwStatusServerErrors reads.
    expect(
      sample(text, 'sw_status_http_server_errors_total', {
        listener: 'internal',
        sender: 'authenticated',
      }),
    ).toBe(1);
    for (const sender of ['authenticated', 'unverified']) {
      expect(
        sample(text, 'sw_status_http_server_errors_total', { listener: 'public', sender }),
      ).toBe(0);
    }
  });

  test('When a call passed through gets the proxy’s own 502, then it is counted too', async () => {
    const before = (await serverErrors(t))!;
    const res = await request(t.internalApp)
      .get(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`)
      .set('Authorization', AUTH);
    expect(res.status).toBe(502);
    expect(await serverErrors(t)).toBe(before + 1);
  });
});

describe('SignalWire slow, failing, or the replica shutting down', () => {
  let upstream: Awaited<ReturnType<typeof listenFirst>>;
  /** A short SIGNALWIRE_TIMEOUT_MS: for the upstream that never answers. */
  let t: TestApp;
  /**
   * The same upstream with a timeout far above a loopback answer: for the upstream that answers
   * (its 500 must be relayed, not cut off as the proxy's own 504 on a loaded machine).
   */
  let answering: TestApp;
  beforeAll(async () => {
    upstream = await listenFirst();
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url, SIGNALWIRE_TIMEOUT_MS: '200' });
    answering = await createTestApp({
      SIGNALWIRE_SPACE_URL: upstream.url,
      SIGNALWIRE_TIMEOUT_MS: '15000',
    });
  });
  afterAll(async () => {
    await answering.close();
    await t.close();
    await upstream.close();
  });
  afterEach(() => {
    t.deps.lifecycle.connectionsCutAt = undefined;
  });

  test('When SignalWire does not answer in time (the proxy’s own 504), then it is counted', async () => {
    upstream.use(() => undefined);
    const before = (await serverErrors(t))!;
    const res = await compatCreate(t);
    expect(res.status).toBe(504);
    expect(await serverErrors(t)).toBe(before + 1);
  });

  test('When SignalWire itself answers 500 and the proxy relays it, then it is not the service’s 5xx', async () => {
    upstream.use((req, res) => {
      req.resume();
      req.on('end', () =>
        res
          .writeHead(500, { 'content-type': 'application/json' })
          .end('{"code":20500,"message":"Internal Server Error","status":500}'),
      );
    });
    const before = (await serverErrors(answering))!;
    const res = await compatCreate(answering);
    expect(res.status).toBe(500);
    const text = await scrape(answering.internalApp);
    expect(
      sample(text, 'sw_status_upstream_request_duration_seconds_count', {
        api: 'cxml',
        status: '500',
      }),
    ).toBe(1);
    expect(
      sample(text, 'sw_status_http_server_errors_total', {
        listener: 'internal',
        sender: 'authenticated',
      }),
    ).toBe(before);
  });

  test('When the replica is shutting down and refuses a send 503 (retry elsewhere), then it is not counted', async () => {
    t.deps.lifecycle.connectionsCutAt = performance.now();
    const before = (await serverErrors(t))!;
    const res = await compatCreate(t);
    expect(res.status).toBe(503);
    expect(await serverErrors(t)).toBe(before);
  });
});
