import { createHash } from 'node:crypto';
import request from 'supertest';
import { assemblePage } from '../../src/page/page-html';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from '../proxy/support';

/**
 * The status page's route on the internal listener: the whole page in one response, with the
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
  expect(res.headers['cache-control']).toBe('no-cache');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  const csp = res.headers['content-security-policy'] as string;
  expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https:|upgrade-insecure-requests/);
  expect(csp).not.toMatch(/(?:script|style)-src[^;]*'self'/);
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("connect-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  // An unchanged page is a 304.
  await request(t.internalApp).get('/').set('If-None-Match', res.headers.etag!).expect(304);
});

test('When a fetch client revalidates GET / with its ETag (fetch adds Cache-Control: no-cache), then it gets the documented 304, as /v1 does', async () => {
  // Express's req.fresh (res.send) treats a request's `Cache-Control: no-cache` as never
  // fresh, and the fetch standard adds that header to every request carrying If-None-Match:
  // the page's 304 never came to a browser's or Node's fetch (etag.ts ifNoneMatchNames).
  const server = await listen(t.internalApp);
  try {
    const first = await fetch(`${server.url}/`);
    const etag = first.headers.get('etag')!;
    await first.text();
    expect([first.status, etag]).toEqual([200, expect.stringMatching(/^"/)]);
    const revalidations: Array<Record<string, string>> = [
      { 'If-None-Match': etag },
      { 'If-None-Match': etag, 'Cache-Control': 'no-cache' },
      { 'If-None-Match': `"other", W/${etag}` },
    ];
    for (const headers of revalidations) {
      const again = await fetch(`${server.url}/`, { headers });
      const body = await again.text();
      expect([again.status, again.headers.get('etag'), body.length]).toEqual([304, etag, 0]);
    }
    const changed = await fetch(`${server.url}/`, { headers: { 'If-None-Match': '"other"' } });
    expect([changed.status, (await changed.text()).length > 0]).toEqual([200, true]);
  } finally {
    await server.close();
  }
});

test('When GET / is asked, then it is the whole page: one script and one stylesheet inside it, allowed by their hashes and nothing else', async () => {
  const res = await request(t.internalApp).get('/').expect(200);
  // Nothing else to fetch: during a rolling update the page's files cannot come from another release.
  expect(res.text).not.toMatch(/\s(?:src|href)="\/(?!\/)/);
  const scripts = [...res.text.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
  const styles = [...res.text.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
  expect(scripts).toHaveLength(1);
  expect(styles).toHaveLength(1);
  expect(res.text.match(/<script/g)).toHaveLength(1);
  expect(res.text).not.toMatch(/\sstyle="|\son\w+="/);
  const hash = (text: string): string => createHash('sha256').update(text).digest('base64');
  const csp = res.headers['content-security-policy'] as string;
  expect(csp).toContain(`script-src 'sha256-${hash(scripts[0]!)}';`);
  expect(csp).toContain(`style-src 'sha256-${hash(styles[0]!)}';`);
  // The files the page was once split into are gone.
  const missing = await request(t.internalApp).get('/page/app.js').expect(404);
  expect(missing.body.error.code).toBe('not_found');
});

test('When a bundle would end its element early, then the page is not assembled', () => {
  expect(() => assemblePage({ script: 'x="</SCRIPT>"', stylesheet: '' })).toThrow(/inlined/);
  expect(() => assemblePage({ script: 'x="<!--"', stylesheet: '' })).toThrow(/inlined/);
  expect(() => assemblePage({ script: '', stylesheet: 'a::after{content:"</style>"}' })).toThrow(
    /inlined/,
  );
  expect(assemblePage({ script: 'x="<\\/script>"', stylesheet: '' }).html).toContain('<\\/script>');
});

test('When the page is served, then the API beside it is unchanged: /v1 needs the token, /docs and /healthz answer', async () => {
  await request(t.internalApp).get('/v1/stats').expect(401);
  await request(t.internalApp).get('/docs/').expect(200);
  await request(t.internalApp).get('/healthz').expect(200);
  await request(t.internalApp).get('/openapi.json').expect(200);
  // The page is the internal listener's only: the public one has no /.
  await request(t.publicApp).get('/').expect(404);
});
