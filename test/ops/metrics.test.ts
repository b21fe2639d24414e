import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { SIGNATURE_FAILURES } from '../../src/callbacks/signature';
import { createMetrics } from '../../src/metrics/metrics';
import { signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import {
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sample, scrape } from './scrape';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({}, { processMetrics: true });
});
afterAll(() => t.close());

const counted = async (labels: Record<string, string>): Promise<number> =>
  sample(await scrape(t.internalApp), 'sw_status_callbacks_total', labels) ?? 0;

describe('GET /metrics', () => {
  test('When /metrics is scraped on the internal listener, then it answers Prometheus text with service and process metrics', async () => {
    const res = await request(t.internalApp).get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of [
      'sw_status_callbacks_total',
      'sw_status_callback_signature_failures_total',
      'sw_status_ingest_duration_seconds',
      'sw_status_upstream_request_duration_seconds',
      'sw_status_status_transition_seconds',
      'sw_status_rate_limited_total',
      'sw_status_db_pool_clients',
      'sw_status_db_pool_idle_clients',
      'sw_status_db_pool_waiting_requests',
      'process_cpu_user_seconds_total',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(res.text).toContain(`# TYPE ${name} `);
    }
  });

  test('When /metrics is requested on the public listener, then it does not exist there', async () => {
    const res = await request(t.publicApp).get('/metrics').expect(404);
    expect(res.body.error.code).toBe('not_found');
  });

  test('When /metrics is scraped, then no bearer token is needed (Prometheus scrapes the internal listener)', async () => {
    await request(t.internalApp).get('/metrics').expect(200);
  });

  test('When the database pool is in use, then its clients are reported on scrape', async () => {
    await request(t.publicApp).get('/readyz').expect(200);
    const text = await scrape(t.internalApp);
    expect(sample(text, 'sw_status_db_pool_clients')).toBe(t.database.pool.totalCount);
    expect(sample(text, 'sw_status_db_pool_clients')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'sw_status_db_pool_idle_clients')).toBe(t.database.pool.idleCount);
    expect(sample(text, 'sw_status_db_pool_waiting_requests')).toBe(0);
  });
});

describe('callback metrics', () => {
  test('When a callback is recorded and then repeated, then one is counted recorded and one duplicate', async () => {
    const labels = (outcome: string) => ({ api: 'cxml', status: 'undelivered', outcome });
    const [recorded, duplicate] = [
      await counted(labels('recorded')),
      await counted(labels('duplicate')),
    ];
    const fields = cxmlFields({ MessageStatus: 'undelivered', ErrorCode: '30003' });
    await postCxml(t.publicApp, fields).expect(200);
    await postCxml(t.publicApp, fields).expect(200);
    expect(await counted(labels('recorded'))).toBe(recorded + 1);
    expect(await counted(labels('duplicate'))).toBe(duplicate + 1);
  });

  test('When a signature does not verify, then the callback is counted refused and the signature failure by reason', async () => {
    const text = await scrape(t.internalApp);
    const refused = { api: 'cxml', status: 'unauthenticated', outcome: 'refused_mismatch' };
    const before = sample(text, 'sw_status_callbacks_total', refused) ?? 0;
    const failures =
      sample(text, 'sw_status_callback_signature_failures_total', { reason: 'mismatch' }) ?? 0;
    await postCxml(t.publicApp, cxmlFields(), { key: 'PSK_not_the_key' }).expect(403);
    const after = await scrape(t.internalApp);
    expect(sample(after, 'sw_status_callbacks_total', refused)).toBe(before + 1);
    expect(
      sample(after, 'sw_status_callback_signature_failures_total', { reason: 'mismatch' }),
    ).toBe(failures + 1);
  });

  test('When a callback is authenticated by its signature, then it is counted verified; one that comes by its token is not (the signature failure rate is against the signed ones)', async () => {
    const verified = async () =>
      sample(await scrape(t.internalApp), 'sw_status_callback_signatures_verified_total') ?? 0;
    const before = await verified();
    await postCxml(t.publicApp, cxmlFields()).expect(200);
    expect(await verified()).toBe(before + 1);
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const byToken = new URLSearchParams(cxmlFields()).toString();
    await request(t.publicApp)
      .post(`/callbacks/cxml/${token}`)
      .type('form')
      .send(byToken)
      .expect(200);
    expect(await verified()).toBe(before + 1);
  });

  test('When a callback has no credentials or a bad token, then it is counted refused_missing or refused_bad_token', async () => {
    const missing = { api: 'native', status: 'unauthenticated', outcome: 'refused_missing' };
    const badToken = { api: 'native', status: 'unauthenticated', outcome: 'refused_bad_token' };
    const [m, b] = [await counted(missing), await counted(badToken)];
    const body = JSON.stringify(nativeFields());
    await request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'application/json')
      .send(body)
      .expect(401);
    await request(t.publicApp)
      .post('/callbacks/native/not-a-valid-token')
      .set('Content-Type', 'application/json')
      .send(body)
      .expect(403);
    expect(await counted(missing)).toBe(m + 1);
    expect(await counted(badToken)).toBe(b + 1);
  });

  test('When an authenticated callback lacks required fields, then it is counted refused_invalid', async () => {
    const invalid = { api: 'cxml', status: 'invalid', outcome: 'refused_invalid' };
    const before = await counted(invalid);
    const fields = cxmlFields();
    delete fields.MessageSid;
    await postCxml(t.publicApp, fields).expect(400);
    expect(await counted(invalid)).toBe(before + 1);
  });

  test('When a callback body cannot be parsed or has the wrong type, then it is counted refused by error code', async () => {
    const malformed = { api: 'native', status: 'invalid', outcome: 'refused_malformed_body' };
    const unsupported = {
      api: 'native',
      status: 'invalid',
      outcome: 'refused_unsupported_media_type',
    };
    const [m, u] = [await counted(malformed), await counted(unsupported)];
    // A JSON body is parsed only once its signature (over the raw bytes) verified: a
    // malformed one that is correctly signed is a 400.
    const url = `${TEST_PUBLIC_BASE_URL}/callbacks/native`;
    await request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'application/json')
      .set('X-SignalWire-Signature', signJsonBody(TEST_SIGNING_KEY, url, '{not json'))
      .send('{not json')
      .expect(400);
    await request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'text/plain')
      .send('hello')
      .expect(415);
    expect(await counted(malformed)).toBe(m + 1);
    expect(await counted(unsupported)).toBe(u + 1);
  });

  test('When a callback is acknowledged, then its received-to-durable latency is observed with code 200, from an authenticated sender', async () => {
    const labels = { api: 'native', code: '200', sender: 'authenticated' };
    const before =
      sample(await scrape(t.internalApp), 'sw_status_ingest_duration_seconds_count', labels) ?? 0;
    await postNative(t.publicApp, nativeFields()).expect(200);
    const text = await scrape(t.internalApp);
    expect(sample(text, 'sw_status_ingest_duration_seconds_count', labels)).toBe(before + 1);
    expect(sample(text, 'sw_status_ingest_duration_seconds_sum', labels)).toBeGreaterThan(0);
    expect(
      sample(text, 'sw_status_ingest_duration_seconds_bucket', { ...labels, le: '+Inf' }),
    ).toBe(before + 1);
  });

  test('When a callback is refused, then its latency is observed under its status code, from an unverified sender', async () => {
    const labels = { api: 'cxml', code: '403', sender: 'unverified' };
    const before =
      sample(await scrape(t.internalApp), 'sw_status_ingest_duration_seconds_count', labels) ?? 0;
    await postCxml(t.publicApp, cxmlFields(), { key: 'PSK_wrong' }).expect(403);
    const text = await scrape(t.internalApp);
    expect(sample(text, 'sw_status_ingest_duration_seconds_count', labels)).toBe(before + 1);
  });
});

describe('status transition metrics', () => {
  const transition = (text: string, from: string, to: string, what: 'sum' | 'count') =>
    sample(text, `sw_status_status_transition_seconds_${what}`, { api: 'native', from, to }) ?? 0;

  test('When a message goes queued → sent → delivered, then the time between the statuses is observed per api', async () => {
    const before = await scrape(t.internalApp);
    const id = randomUUID();
    // Stamped a minute ago, as SignalWire stamps what it calls back about at once.
    const base = Math.floor(Date.now() / 1000) * 1000 - 60_000;
    const at = (seconds: number) => new Date(base + seconds * 1000).toISOString();
    await postNative(t.publicApp, nativeFields({ id, status: 'queued', timestamp: at(0) })).expect(
      200,
    );
    await postNative(t.publicApp, nativeFields({ id, status: 'sent', timestamp: at(2) })).expect(
      200,
    );
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'delivered', timestamp: at(7) }),
    ).expect(200);
    const after = await scrape(t.internalApp);

    expect(transition(after, 'queued', 'sent', 'count')).toBe(
      transition(before, 'queued', 'sent', 'count') + 1,
    );
    expect(
      transition(after, 'queued', 'sent', 'sum') - transition(before, 'queued', 'sent', 'sum'),
    ).toBeCloseTo(2);
    expect(transition(after, 'sent', 'delivered', 'count')).toBe(
      transition(before, 'sent', 'delivered', 'count') + 1,
    );
    expect(
      transition(after, 'sent', 'delivered', 'sum') -
        transition(before, 'sent', 'delivered', 'sum'),
    ).toBeCloseTo(5);
  });

  test.each([
    ['far in the future', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z'],
    ['at the epoch', '1970-01-01T00:00:00Z', new Date().toISOString()],
  ])(
    'When a callback is stamped %s (a provider clock gone wrong), then its transition is timed by receive times, not by the stamp',
    async (_what, sentAt, deliveredAt) => {
      const before = await scrape(t.internalApp);
      const id = randomUUID();
      await postNative(t.publicApp, nativeFields({ id, status: 'sent', timestamp: sentAt })).expect(
        200,
      );
      await postNative(
        t.publicApp,
        nativeFields({ id, status: 'delivered', timestamp: deliveredAt }),
      ).expect(200);
      const after = await scrape(t.internalApp);
      expect(transition(after, 'sent', 'delivered', 'count')).toBe(
        transition(before, 'sent', 'delivered', 'count') + 1,
      );
      const seconds =
        transition(after, 'sent', 'delivered', 'sum') -
        transition(before, 'sent', 'delivered', 'sum');
      expect(seconds).toBeGreaterThanOrEqual(0);
      expect(seconds).toBeLessThan(60);
    },
  );

  test('When a late lower-ranked callback arrives, then no transition is observed (the status does not move)', async () => {
    const id = randomUUID();
    await postNative(t.publicApp, nativeFields({ id, status: 'delivered' })).expect(200);
    const before = await scrape(t.internalApp);
    await postNative(t.publicApp, nativeFields({ id, status: 'sent' })).expect(200);
    const after = await scrape(t.internalApp);
    expect(transition(after, 'delivered', 'sent', 'count')).toBe(0);
    expect(after.match(/sw_status_status_transition_seconds_count\{[^}]*\} \d+/g)).toEqual(
      before.match(/sw_status_status_transition_seconds_count\{[^}]*\} \d+/g),
    );
  });
});

describe('hooks for other parts of the service', () => {
  test('When the send proxy reports an upstream call, then its latency is exported by api and upstream status', async () => {
    const metrics = t.deps.metrics!;
    metrics.observeUpstream('cxml', 201, 0.2);
    metrics.observeUpstream('native', 'timeout', 10);
    const text = await scrape(t.internalApp);
    const count = (labels: Record<string, string>) =>
      sample(text, 'sw_status_upstream_request_duration_seconds_count', labels);
    expect(count({ api: 'cxml', status: '201' })).toBe(1);
    expect(count({ api: 'native', status: 'timeout' })).toBe(1);
    expect(
      sample(text, 'sw_status_upstream_request_duration_seconds_bucket', {
        api: 'cxml',
        status: '201',
        le: '0.25',
      }),
    ).toBe(1);
  });

  test('When no signature has failed yet, then every failure reason is served at 0 (so the alert counts the first refusals after a key rotation)', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const text = await metrics.registry.metrics();
    for (const reason of SIGNATURE_FAILURES) {
      expect(sample(text, 'sw_status_callback_signature_failures_total', { reason })).toBe(0);
    }
  });

  test('When the send proxy could not record an accepted send, then it is counted by api', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.onProxyUnrecorded('native');
    const text = await metrics.registry.metrics();
    expect(sample(text, 'sw_status_proxy_unrecorded_sends_total', { api: 'native' })).toBe(1);
  });

  test('When a spool depth function is given, then its value is reported on every scrape', async () => {
    let depth = 3;
    const metrics = createMetrics({ spoolDepth: () => depth, processMetrics: false });
    expect(sample(await metrics.registry.metrics(), 'sw_status_spool_depth')).toBe(3);
    depth = 42;
    expect(sample(await metrics.registry.metrics(), 'sw_status_spool_depth')).toBe(42);
  });

  test('When no spool or pool is given, then their gauges are absent rather than zero', async () => {
    const text = await createMetrics({ processMetrics: false }).registry.metrics();
    expect(text).not.toContain('sw_status_spool_depth');
    expect(text).not.toContain('sw_status_db_pool_clients');
  });

  test('When two apps are built in one process, then each has its own registry', async () => {
    const other = await createTestApp();
    try {
      const labels = { api: 'native', status: 'delivered', outcome: 'recorded' };
      const before = sample(await scrape(other.internalApp), 'sw_status_callbacks_total', labels);
      await postNative(t.publicApp, nativeFields()).expect(200);
      expect(sample(await scrape(other.internalApp), 'sw_status_callbacks_total', labels)).toBe(
        before,
      );
    } finally {
      await other.close();
    }
  });
});
