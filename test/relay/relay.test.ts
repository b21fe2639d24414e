import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { decodeSpoolLine, encodeSpoolLine } from '../../src/ingest/spool-codec';
import { createMetrics } from '../../src/metrics/metrics';
import { recordEvents } from '../../src/messages/record-events';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { TEST_API_TOKEN, TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { sample } from '../ops/scrape';
import { createRelayTestApp, eventually, seedProxiedMessage, startCustomerApp } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * The relay end to end on real sockets and a real PostgreSQL: signed callbacks into the
 * public app, the outbox in the same transaction, the worker sending to a customer app on a
 * real port that validates every request like an app does.
 */

// The attempt's timeout well above a loaded machine's stalls: an attempt that outlives it after
// the app had the request is retried, and the app counts a delivery twice.
const RELAY_TIMEOUT_MS = 2_000;
const ENV = {
  RELAY_RETRY_SCHEDULE: '50ms,50ms,50ms',
  RELAY_TIMEOUT_MS: String(RELAY_TIMEOUT_MS),
};

const TUNING = { statsEveryMs: 50, breaker: { failureThreshold: 1_000 } };

let t: RelayTestApp;
let app: CustomerApp;
const metrics = createMetrics({ processMetrics: false });

beforeAll(async () => {
  t = await createRelayTestApp(ENV);
  app = await t.customerApp();
  // The first instance's worker is the one the metrics read.
  t.startWorker({ registry: metrics.registry, tuning: TUNING });
});

afterAll(() => t.close());

async function relays(messageId: string) {
  const res = await request(t.internalApp)
    .get('/v1/relays')
    .query({ message_id: messageId })
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  return (res.body as { data: Array<Record<string, unknown>> }).data;
}

async function jobRow(messageId: string) {
  return t.database.db
    .selectFrom('relay_jobs')
    .selectAll()
    .where('message_id', '=', messageId)
    .orderBy('id')
    .execute();
}

const receivedFor = (id: string) => app.received.filter((r) => r.messageId === id);

describe('relay of the caller’s own status callback', () => {
  test('When a compatibility callback arrives for a proxied message, then the app gets the same form bytes, validated by the official SDK, and the kept bytes are deleted', async () => {
    const id = await seedProxiedMessage(
      t.database.db,
      'cxml',
      app.callbackUrl('/sms/status?tenant=7'),
    );
    expect(await jobRow(id)).toHaveLength(0); // the proxy's own queued is never relayed

    const fields = cxmlFields({ MessageSid: id, MessageStatus: 'sent', Body: 'Grüße & 🚀 = ok' });
    await postCxml(t.publicApp, fields).expect(200);

    const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
    expect(relay).toMatchObject({
      method: 'POST',
      path: '/sms/status?tenant=7',
      valid: true,
      status: 'sent',
    });
    expect(relay!.body).toBe(new URLSearchParams(fields).toString());
    expect(relay!.headers['content-type']).toBe('application/x-www-form-urlencoded');

    const [job] = await eventually(async () => {
      const rows = await jobRow(id);
      return rows[0]?.state === 'delivered' && rows;
    });
    expect(job).toMatchObject({ attempts: 1, last_status: 200, payload: null });
    expect(job!.event_seq).toEqual(expect.any(Number));
  });

  test('When the caller’s callback URL carries SignalWire’s #rt=/#ot= overrides, then the relay calls and signs it without the fragment, which no client sends', async () => {
    const given = app.callbackUrl('/sms/status?tenant=8#rt=10000&ot=3000');
    const id = await seedProxiedMessage(t.database.db, 'cxml', given);
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);

    const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
    // The app validates against the URL it was called at, as every SDK's validator does.
    expect(relay).toMatchObject({ path: '/sms/status?tenant=8', valid: true, answered: 200 });
    const message = await request(t.internalApp)
      .get(`/v1/messages/${id}`)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(message.body.client_status_callback).toBe(given);
  });

  test('When a native callback arrives, then the app gets the JSON body as received, signed with the hex scheme', async () => {
    const id = await seedProxiedMessage(t.database.db, 'native', app.callbackUrl('/native/hook'));
    const fields = nativeFields({ id, status: 'delivered', custom_variables: { order: '12' } });
    // Spacing and key order as sent: the bytes are relayed, not a re-serialisation.
    const body = JSON.stringify(fields, null, 1);
    await request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'application/json; charset=utf-8')
      .set(
        'X-SignalWire-Signature',
        signJsonBody(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/native`, body),
      )
      .send(body)
      .expect(200);
    const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
    expect(relay).toMatchObject({ valid: true, status: 'delivered', path: '/native/hook' });
    expect(relay!.body).toBe(body);
    expect(relay!.headers['content-type']).toBe('application/json; charset=utf-8');
  });

  test('When SignalWire called back with GET (a cXML Application so configured), then the app gets a signed GET with the same query', async () => {
    const id = await seedProxiedMessage(
      t.database.db,
      'cxml',
      app.callbackUrl('/get-hook?tenant=3'),
    );
    const query = new URLSearchParams(
      cxmlFields({ MessageSid: id, MessageStatus: 'sent' }),
    ).toString();
    const path = `/callbacks/cxml?${query}`;
    await request(t.publicApp)
      .get(path)
      .set(
        'X-SignalWire-Signature',
        signFormParams(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}${path}`, []),
      )
      .expect(200);
    const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
    expect(relay).toMatchObject({
      method: 'GET',
      valid: true,
      status: 'sent',
      path: `/get-hook?tenant=3&${query}`,
    });
  });

  test('When the same callback arrives twice, then it is relayed once', async () => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
    const fields = cxmlFields({ MessageSid: id, MessageStatus: 'delivered' });
    await postCxml(t.publicApp, fields).expect(200);
    await postCxml(t.publicApp, fields).expect(200);
    await eventually(() => receivedFor(id).length === 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receivedFor(id)).toHaveLength(1);
    expect(await jobRow(id)).toHaveLength(1);
  });

  test('When callbacks arrive faster than the app answers, then they go out one at a time in the order stored', async () => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
    app.behave(id, () => ({ status: 200, delayMs: 80 }));
    for (const status of ['queued', 'sent', 'delivered']) {
      await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: status })).expect(
        200,
      );
    }
    await eventually(() => receivedFor(id).length === 3);
    expect(receivedFor(id).map((r) => r.status)).toEqual(['queued', 'sent', 'delivered']);
    expect(app.maxConcurrent([id])).toBe(1);
  });

  test('When the app fails its first attempts, then the relay is retried on the schedule until it answers 2xx', async () => {
    const id = await seedProxiedMessage(t.database.db, 'native', app.callbackUrl());
    app.behave(id, (n) => ({ status: n <= 2 ? 500 : 204 }));
    await postNative(t.publicApp, nativeFields({ id, status: 'sent' })).expect(200);
    const [relay] = await eventually(async () => {
      const list = await relays(id);
      return list[0]?.state === 'delivered' && list;
    });
    expect(relay).toMatchObject({
      attempts: 3,
      last_status: 204,
      last_error: null,
      next_attempt_at: null,
    });
    expect(receivedFor(id).map((r) => r.answered)).toEqual([500, 500, 204]);
  });

  test('When the app fails forever, then the relay is dead without the message body, and a retry through the API delivers it', async () => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
    let healthy = false;
    app.behave(id, () => ({ status: healthy ? 200 : 503 }));
    const fields = cxmlFields({
      MessageSid: id,
      MessageStatus: 'undelivered',
      ErrorCode: '30003',
      Body: 'secret',
    });
    await postCxml(t.publicApp, fields).expect(200);

    const [dead] = await eventually(async () => {
      const list = await relays(id);
      return list[0]?.state === 'dead' && list;
    });
    expect(dead).toMatchObject({
      attempts: 4,
      last_status: 503,
      last_error: 'HTTP 503 (after 4 attempts)',
    });
    const [row] = await jobRow(id);
    expect(row!.payload!.toString()).not.toContain('secret');
    const listed = await request(t.internalApp)
      .get('/v1/relays?state=dead')
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect((listed.body as { data: Array<{ id: number }> }).data.map((r) => r.id)).toContain(
      dead!.id,
    );

    healthy = true;
    const retried = await request(t.internalApp)
      .post(`/v1/relays/${String(dead!.id)}/retry`)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(retried.body).toMatchObject({ state: 'pending', attempts: 0 });
    await eventually(async () => (await relays(id))[0]?.state === 'delivered');
    const last = receivedFor(id).at(-1)!;
    expect(last).toMatchObject({ valid: true, answered: 200, status: 'undelivered' });
    expect(Object.fromEntries(new URLSearchParams(last.body))).toMatchObject({
      ErrorCode: '30003',
    });

    await request(t.internalApp)
      .post(`/v1/relays/${String(dead!.id)}/retry`)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(409);
    await request(t.internalApp)
      .post('/v1/relays/999999999/retry')
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(404);
  });

  test('When the app answers slower than RELAY_TIMEOUT_MS, then the attempt fails and is retried', async () => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
    app.behave(id, (n) => ({ status: 200, delayMs: n === 1 ? 2 * RELAY_TIMEOUT_MS : 0 }));
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    const [relay] = await eventually(async () => {
      const list = await relays(id);
      return list[0]?.state === 'delivered' && list;
    });
    expect(relay).toMatchObject({ attempts: 2 });
    const history = await t.database.db
      .selectFrom('relay_jobs')
      .select('last_error')
      .where('message_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(history.last_error).toBeNull();
  });

  test('When the app redirects, then the redirect is not followed and counts as a failure', async () => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/old'));
    app.behave(id, () => ({ status: 302, headers: { location: `${app.url}/moved` } }));
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    const [relay] = await eventually(async () => {
      const list = await relays(id);
      return list[0]?.state === 'dead' && list;
    });
    expect(relay).toMatchObject({ last_status: 302 });
    expect(String(relay!.last_error)).toMatch(/redirects are not followed/);
    expect(app.paths).not.toContain('/moved');
  });

  test('When a callback was spooled during an outage, then its replay is relayed with the bytes it came with', async () => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
    const fields = cxmlFields({ MessageSid: id, MessageStatus: 'delivered' });
    const raw = new URLSearchParams(fields).toString();
    const event = normalizeCxmlCallback(fields, { receivedAt: new Date(), storeBody: false });
    event.relay = {
      method: 'POST',
      contentType: 'application/x-www-form-urlencoded',
      body: Buffer.from(raw).toString('base64'),
      keyRef: null,
    };
    const replayed = decodeSpoolLine(encodeSpoolLine(event))!;
    expect(replayed.relay).toEqual(event.relay);
    await recordEvents(t.database.db, [{ ...replayed, source: 'replay' }]);
    const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
    expect(relay).toMatchObject({ valid: true, body: raw });
  });

  test('When a spool line was written before the relay existed, then it still decodes', () => {
    const event = normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
    const old = decodeSpoolLine(encodeSpoolLine(event));
    expect(old?.messageId).toBe(event.messageId);
    expect(old?.relay).toBeUndefined();
  });

  test('When a message has no client callback, then nothing is enqueued', async () => {
    const id = randomUUID();
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id })).expect(200);
    expect(await jobRow(id)).toHaveLength(0);
  });

  test('When one app hangs, then it gets at most RELAY_HOST_CONCURRENCY requests at once and other apps’ relays flow meanwhile', async () => {
    const hanging = await startCustomerApp(TEST_SIGNING_KEY);
    try {
      const stuckIds = await Promise.all(
        Array.from({ length: 10 }, () =>
          seedProxiedMessage(t.database.db, 'cxml', hanging.callbackUrl('/slow')),
        ),
      );
      for (const id of stuckIds) {
        hanging.behave(id, () => ({ status: 200, delayMs: 2 * RELAY_TIMEOUT_MS }));
      }
      for (const id of stuckIds) {
        await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(
          200,
        );
      }
      const healthyIds = await Promise.all(
        Array.from({ length: 6 }, () =>
          seedProxiedMessage(t.database.db, 'native', app.callbackUrl('/fast')),
        ),
      );
      for (const id of healthyIds) {
        await postNative(t.publicApp, nativeFields({ id, status: 'delivered' })).expect(200);
      }
      await eventually(() => healthyIds.every((id) => receivedFor(id).length === 1));
      // Meanwhile the hanging app has answered nothing in time, and never had more than 4.
      const slowDelivered = await t.database.db
        .selectFrom('relay_jobs')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('message_id', 'in', stuckIds)
        .where('state', '=', 'delivered')
        .executeTakeFirstOrThrow();
      expect(Number(slowDelivered.n)).toBe(0);
      expect(hanging.received).toHaveLength(0);
      expect(hanging.maxConcurrentOverall()).toBeLessThanOrEqual(4);
    } finally {
      await hanging.close();
    }
  });

  test('When two service instances share the outbox, then every event is relayed once, in order per message', async () => {
    t.startWorker({ tuning: TUNING });
    const ids = await Promise.all(
      Array.from({ length: 12 }, () =>
        seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/shared')),
      ),
    );
    for (const id of ids) app.behave(id, () => ({ status: 200, delayMs: 10 }));
    await Promise.all(
      ids.map(async (id) => {
        for (const status of ['queued', 'sent', 'delivered']) {
          await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: status })).expect(
            200,
          );
        }
      }),
    );
    // Until every job's outcome is written (the app has the last request a moment before).
    const jobs = await eventually(async () => {
      const rows = await t.database.db
        .selectFrom('relay_jobs')
        .select(['message_id', 'state', 'attempts'])
        .where('message_id', 'in', ids)
        .execute();
      return rows.length === 3 * ids.length && rows.every((job) => job.state !== 'pending') && rows;
    });
    for (const id of ids) {
      const statuses = receivedFor(id).map((r) => r.status);
      const own = jobs.filter((job) => job.message_id === id);
      expect(own.map((job) => job.state)).toEqual(['delivered', 'delivered', 'delivered']);
      // Once per event — unless an attempt outlived RELAY_TIMEOUT_MS (2 s here) on a busy
      // machine after the app had the request: then it was retried (at least once), and the
      // job's attempts say so. Never more deliveries than attempts, never out of order.
      const attempts = own.reduce((sum, job) => sum + job.attempts, 0);
      if (attempts === 3) expect(statuses).toEqual(['queued', 'sent', 'delivered']);
      expect(statuses.length).toBeLessThanOrEqual(attempts);
      expect(statuses.filter((s, i) => s !== statuses[i - 1])).toEqual([
        'queued',
        'sent',
        'delivered',
      ]);
    }
    expect(app.maxConcurrent(ids)).toBe(1);
  });

  test('When relays have been attempted, then metrics count attempts by outcome and report the backlog', async () => {
    const text = await metrics.registry.metrics();
    expect(
      sample(text, 'sw_status_relay_attempts_total', { outcome: 'delivered' }),
    ).toBeGreaterThan(0);
    expect(sample(text, 'sw_status_relay_attempts_total', { outcome: 'retry' })).toBeGreaterThan(0);
    expect(sample(text, 'sw_status_relay_dead')).toEqual(expect.any(Number));
    expect(sample(text, 'sw_status_relay_oldest_pending_age_seconds')).toEqual(expect.any(Number));
    expect(sample(text, 'sw_status_relay_pending')).toEqual(expect.any(Number));
  });
});
