import type { Browser, Page } from 'playwright-core';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from '../proxy/support';
import { confineTo, launchChromium, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';

/**
 * The README's token-secret rotation: "put the new one first". During that rollout new pods
 * (CALLBACK_TOKEN_SECRET=NEW,OLD) sign feed cursors with NEW, and old pods (OLD) refuse them
 * `400 invalid_cursor`. The page then goes back to `after=now` (answered at once) and asks
 * again with the new cursor: with no pause anywhere in that circle, a tab behind a load
 * balancer spreading requests over both kinds of pod asked as fast as the round trips allowed
 * (43 requests in 5 s). Here the worst case: every request from `now` reaches a new pod and
 * every long-poll an old one, so every cursor is refused.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

const UNTIL = { timeout: 30_000 };
/** How long the page's requests are counted. */
const WATCH_MS = 5_000;
const NEW_SECRET = 'a-new-callback-token-secret-9876543210';

describeBrowser('status page behind pods in the middle of a token-secret rotation', () => {
  let newPod: TestApp;
  let oldPod: TestApp;
  let server: { url: string; close(): Promise<void> };
  let browser: Browser;
  let page: Page;
  let watch: PageWatch;

  beforeAll(async () => {
    browser = await launchChromium();
    newPod = await createTestApp({ CALLBACK_TOKEN_SECRET: `${NEW_SECRET},${TEST_TOKEN_SECRET}` });
    oldPod = await createTestApp({}, { database: newPod.database });
    // The load balancer: cursors are issued by a new pod and read by an old one.
    server = await listen((req, res) => {
      const longPoll = req.url!.startsWith('/v1/events?') && !req.url!.includes('after=now');
      (longPoll ? oldPod : newPod).internalApp(req, res);
    });
    page = await browser.newPage();
    watch = watchPage(page);
    await confineTo(page, new URL(server.url).origin);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await oldPod?.close();
    await newPod?.close();
  });

  test('When feed cursors are refused by some replicas (a secret rotation rollout), then the page pauses before starting over, longer each time, instead of looping without a pause', async () => {
    await signIn(page, server.url, TEST_API_TOKEN);
    await page.locator('#dashboard').waitFor({ state: 'visible', ...UNTIL });
    const before = watch.requests.length;
    await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
    const feed = watch.requests
      .slice(before)
      .filter((url) => new URL(url).pathname === '/v1/events').length;
    const refused = watch.responses.filter(
      (res) => new URL(res.url).pathname === '/v1/events' && res.status === 400,
    ).length;
    expect(refused).toBeGreaterThan(0);
    // Pauses of 0.5–1 s, then 1–2 s, then 2–4 s: at most about a request a second.
    expect(feed).toBeLessThanOrEqual(2 * (WATCH_MS / 1000) + 1);
    // The service answers: the page does not say the connection is lost.
    expect(await page.locator('#live-state').textContent()).not.toMatch(/lost|Retrying/i);
  });
});
