import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { CHROMIUM, launchChromium, skipBrowserTests, watchPage } from './support/browser';

/**
 * GET /docs in a real browser (DESIGN §6: "renders it (assets served locally, no CDN)"), opened
 * by a name other than localhost, the way an operator reaches a deployed service: Swagger UI
 * then asks validator.swagger.io about the document for its badge unless told not to.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;

describeBrowser('the API docs in a browser', () => {
  let t: TestApp;
  let server: Server;
  let browser: Browser;
  beforeAll(async () => {
    t = await createTestApp();
    server = createServer(t.internalApp);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    await launchChromium().then((probe) => probe.close()); // a missing browser says how to install it
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-dev-shm-usage',
        '--host-resolver-rules=MAP sw-status.test 127.0.0.1',
      ],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server?.close(resolve));
    await t?.close();
  });

  test.each(['/docs', '/docs/'])(
    'When %s is opened by a host name, then it renders the document and asks nothing of the internet',
    async (path) => {
      const { port } = server.address() as AddressInfo;
      const origin = `http://sw-status.test:${port}`;
      const page = await browser.newPage();
      const watch = watchPage(page);
      // Nothing may leave: a request elsewhere is aborted, and recorded.
      await page.route('**/*', (route) =>
        new URL(route.request().url()).origin === origin ? route.continue() : route.abort(),
      );
      const answer = await page.goto(`${origin}${path}`);
      expect(answer?.status()).toBe(200);
      await page.locator('.swagger-ui .info .title').filter({ hasText: 'sw-status' }).waitFor();
      await page.locator('.opblock-summary-path', { hasText: '/v1/messages' }).first().waitFor();
      await page.waitForLoadState('networkidle');
      expect(watch.requests.filter((url) => new URL(url).origin !== origin)).toEqual([]);
      // Chromium ignores the service's Cross-Origin-Opener-Policy over plain HTTP to a name
      // other than localhost, and says so: the test's doing, not the page's.
      const errors = watch.consoleErrors.filter((text) => !/Cross-Origin-Opener-Policy/.test(text));
      expect(errors).toEqual([]);
      await page.close();
    },
    60_000,
  );

  test('When "Try it out" runs GET /v1/messages on a page opened by a host name, then it asks that host, with no filter the reader did not choose', async () => {
    const { port } = server.address() as AddressInfo;
    const origin = `http://sw-status.test:${port}`;
    const page = await browser.newPage();
    await page.goto(`${origin}/docs`);
    const operation = page
      .locator('.opblock-get')
      .filter({ has: page.locator('.opblock-summary-path', { hasText: /^\/v1\/messages$/ }) });
    await operation.locator('.opblock-summary').click();
    await operation.getByRole('button', { name: 'Try it out' }).click();
    const asked = page.waitForResponse((res) => res.url().includes('/v1/messages'));
    await operation.getByRole('button', { name: 'Execute' }).click();
    const answer = await asked;
    const url = new URL(answer.url());
    // No bearer token was given: the service itself answers 401 (not the browser's CSP
    // refusing a request to http://localhost:8081).
    expect(url.origin).toBe(origin);
    expect(answer.status()).toBe(401);
    expect(
      [...url.searchParams.keys()].filter((name) => !['limit', 'order'].includes(name)),
    ).toEqual([]);
    await page.close();
  }, 60_000);
});
