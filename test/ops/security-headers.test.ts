import request from 'supertest';
import type { Express } from 'express';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const listeners: Array<[string, () => Express]> = [
  ['public', () => t.publicApp],
  ['internal', () => t.internalApp],
];

describe.each(listeners)('%s listener', (_name, app) => {
  test.each(['/healthz', '/no-such-route'])(
    'When %s is requested, then helmet security headers are set and X-Powered-By is not',
    async (path) => {
      const res = await request(app()).get(path);
      expect(res.headers).toMatchObject({
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'SAMEORIGIN',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
        'x-dns-prefetch-control': 'off',
      });
      expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      expect(res.headers['x-powered-by']).toBeUndefined();
    },
  );

  test('When anything is served, then its CSP does not upgrade requests to https (the listeners speak plain HTTP)', async () => {
    // With `upgrade-insecure-requests` a browser fetches /docs' scripts, styles and
    // /openapi.json over https from a port without TLS: a blank page anywhere but loopback.
    const paths = ['/healthz', '/docs/', '/docs/swagger-ui.css', '/openapi.json'];
    for (const path of app() === t.internalApp ? paths : ['/healthz']) {
      const res = await request(app()).get(path);
      expect([path, res.status]).toEqual([path, 200]);
      expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      expect(res.headers['content-security-policy']).not.toMatch(/upgrade-insecure-requests/);
    }
  });

  test('When a request carries a well-formed X-Request-Id, then it is reused in the response and the error body', async () => {
    const id = 'lb-7f3a.9c:21_abc-DEF';
    const res = await request(app()).get('/no-such-route').set('X-Request-Id', id).expect(404);
    expect(res.headers['x-request-id']).toBe(id);
    expect(res.body.error.request_id).toBe(id);
  });

  test('When a request has no X-Request-Id, then a fresh UUID is returned and used in the error body', async () => {
    const res = await request(app()).get('/no-such-route').expect(404);
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect(res.body.error.request_id).toBe(res.headers['x-request-id']);
  });

  test.each([
    ['markup', '<script>alert(1)</script>'],
    ['spaces and quotes', 'abc" onload="x'],
    ['a log-forging attempt', 'ok\tlevel=fatal msg=pwned'],
    ['an over-long id', 'a'.repeat(129)],
    ['a path', '../../etc/passwd'],
    ['non-ASCII text', 'id-\u00e9t\u00e9'],
  ])(
    'When X-Request-Id contains %s, then it is replaced by a fresh UUID and never echoed',
    async (_what, malicious) => {
      const res = await request(app()).get('/no-such-route').set('X-Request-Id', malicious);
      expect(res.headers['x-request-id']).toMatch(UUID);
      expect(res.body.error.request_id).toBe(res.headers['x-request-id']);
      expect(res.text).not.toContain(malicious);
    },
  );
});
