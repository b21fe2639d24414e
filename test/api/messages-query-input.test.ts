import { randomUUID } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import { errorHandler } from '../../src/http/error-handler';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// What a query API caller can get wrong, or do in a way the API must still understand: the
// answers are a 400 in the documented shape, never a 500, and never a stale 304.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => {
  jest.restoreAllMocks();
  return t.close();
});

const get = (path: string, etag?: string) => {
  const req = request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
  return etag ? req.set('If-None-Match', etag) : req;
};

const listCursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('a NUL character, which PostgreSQL text cannot hold (SQLSTATE 22021)', () => {
  test.each([
    ['a list filter (to)', '/v1/messages?to=%2B1555%00'],
    ['a list filter (from)', '/v1/messages?from=%00'],
    ['a list filter (error_code)', '/v1/messages?error_code=300%0003'],
    [
      'a list cursor',
      `/v1/messages?cursor=${listCursor(['2026-01-01T00:00:00.000Z', 'a\u0000b'])}`,
    ],
  ])('When %s holds one, then the answer is a 400, not a 500', async (_what, path) => {
    const res = await get(path);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ request_id: expect.any(String) });
  });

  test('When a message id holds one, then the answer is a 404 (no message can have it), not a 500', async () => {
    const res = await get('/v1/messages/abc%00def');
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: 'not_found', request_id: expect.any(String) });
  });

  test('When one reaches PostgreSQL past every schema, then the error handler still answers 400', async () => {
    // The backstop: a route that validated nothing sends the text on, PostgreSQL refuses it.
    const app = express();
    app.get('/echo', async (req, _res, next) => {
      try {
        await t.database.pool.query('SELECT $1::text', [String(req.query['v'])]);
      } catch (error) {
        next(error);
      }
    });
    app.use(errorHandler(createLogger('silent')));
    const res = await request(app).get('/echo?v=a%00b');
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request' });
  });
});

test('When to= is given with its + left unencoded (read as a space), then the message is found', async () => {
  const id = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: id, to: '+15551239876' }),
  ]);
  for (const path of ['/v1/messages?to=%2B15551239876', '/v1/messages?to=+15551239876']) {
    const res = await get(path).expect(200);
    expect(res.body.data.map((m: { id: string }) => m.id)).toEqual([id]);
  }
  // Several numbers, each with its own unencoded +.
  const other = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('sent', { messageId: other, from: '+15551230001' }),
  ]);
  const both = await get('/v1/messages?from=+15551230001,+15559990000').expect(200);
  expect(both.body.data.map((m: { id: string }) => m.id)).toEqual([other]);
});

test('When a message is read, then it carries every field DESIGN §4 names, status_rank included', async () => {
  const id = randomUUID();
  await recordEvents(t.database.db, [statusEvent('delivered', { messageId: id })]);
  const res = await get(`/v1/messages/${id}`).expect(200);
  for (const field of [
    'api',
    'project_id',
    'from',
    'to',
    'kind',
    'status',
    'raw_status',
    'status_rank',
    'error_code',
    'error_message',
    'conflict',
    'num_segments',
    'num_media',
    'ref',
    'sent_via_proxy',
    'client_status_callback',
    'created_at',
    'updated_at',
    'last_event_at',
  ]) {
    expect(res.body).toHaveProperty(field);
  }
  expect(res.body.status_rank).toBe(50);
  const list = await get(`/v1/messages?status=delivered&limit=1`).expect(200);
  expect(list.body.data[0].status_rank).toBe(50);
});

test('When a listed message changes twice within one millisecond, then revalidating the page is not a stale 304', async () => {
  // updated_at comes from the writing replica's clock in milliseconds: pinned here, two writes
  // in one millisecond (back-to-back batches, or two replicas) leave it unchanged.
  const id = randomUUID();
  const to = '+15557770001';
  const at = new Date('2026-11-20T10:00:00Z');
  jest.spyOn(Date, 'now').mockReturnValue(Date.now());
  await recordEvents(t.database.db, [statusEvent('sent', { messageId: id, to, receivedAt: at })]);
  const first = await get(`/v1/messages?to=%2B15557770001`).expect(200);
  expect(first.body.data[0].status).toBe('sent');
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: id, to, receivedAt: at }),
  ]);
  jest.restoreAllMocks();

  const again = await get(`/v1/messages?to=%2B15557770001`, first.headers.etag);
  expect(again.status).toBe(200);
  expect(again.body.data[0].status).toBe('delivered');
  // Nothing changed since: the new ETag is answered 304.
  await get(`/v1/messages?to=%2B15557770001`, again.headers.etag).expect(304);
});
