import request from 'supertest';
import { PAGE_CSP } from '../../src/page/page.routes';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The status page's routes on the internal listener: the page and its hashed files, with the
 * page's own Content-Security-Policy, beside the API routes it must not disturb.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

test('When GET / is asked, then the page comes with its own strict policy, always revalidated', async () => {
  const res = await request(t.internalApp).get('/').expect(200);
  expect(res.headers['content-type']).toMatch(/^text\/html/);
  expect(res.headers['content-security-policy']).toBe(PAGE_CSP);
  expect(PAGE_CSP).toContain("script-src 'self'");
  expect(PAGE_CSP).not.toMatch(/unsafe-inline|unsafe-eval|https:|upgrade-insecure-requests/);
  expect(res.headers['cache-control']).toBe('no-cache');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  // No inline script or style: every script and stylesheet is a file of the service.
  expect(res.text).not.toMatch(/<script(?![^>]*\ssrc=)/);
  expect(res.text).not.toMatch(/<style|style="/);
});

test('When the page’s script and stylesheet are asked, then they are served for good under hashed names', async () => {
  const html = (await request(t.internalApp).get('/').expect(200)).text;
  const files = [...html.matchAll(/(?:src|href)="(\/page\/[^"]+)"/g)].map((m) => m[1]!);
  expect(files).toEqual([
    expect.stringMatching(/^\/page\/app-\w+\.css$/),
    expect.stringMatching(/^\/page\/app-\w+\.js$/),
  ]);
  for (const file of files) {
    const res = await request(t.internalApp).get(file).expect(200);
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.headers['content-type']).toMatch(file.endsWith('.js') ? /javascript/ : /text\/css/);
    expect(res.headers.etag).toBeDefined();
  }
  const missing = await request(t.internalApp).get('/page/app-NOPE.js').expect(404);
  expect(missing.body.error.code).toBe('not_found');
});

test('When the page is served, then the API beside it is unchanged: /v1 needs the token, /docs and /healthz answer', async () => {
  await request(t.internalApp).get('/v1/stats').expect(401);
  await request(t.internalApp).get('/docs/').expect(200);
  await request(t.internalApp).get('/healthz').expect(200);
  await request(t.internalApp).get('/openapi.json').expect(200);
  // The page is the internal listener's only: the public one has no /.
  await request(t.publicApp).get('/').expect(404);
});
