import type { Page } from 'playwright-core';
import { confineTo, signIn, skipBrowserTests, watchPage } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * A token pasted with a character outside Latin-1 (a chat client's en dash for `-`, a
 * zero-width space) cannot be put in an Authorization header: `Headers.set` throws a
 * TypeError before any request leaves. The page took that TypeError for a network failure:
 * it kept the token (sessionStorage), opened the dashboard empty and said "Connection lost,
 * retrying…" for ever, backing off, while the service was up and would have said 401. The
 * token form now refuses such a token, saying why (token-store.ts tokenProblem).
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);
const UNTIL = { timeout: 30_000 };
const PASTED = 'test\u2013api\u2013token';
const KEY = 'sw-status.api-token';
/** The page's sessionStorage, typed here without the DOM library. */
type InPage = {
  sessionStorage: {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
  };
};

describeBrowser('status page and a token that cannot be sent', () => {
  let page: Page;

  const rig = useStatusPage();

  beforeEach(async () => {
    page = await rig.browser.newPage();
    await confineTo(page, new URL(rig.server.url).origin);
  });

  afterEach(async () => {
    await page?.close();
  });

  const apiRequests = (requests: string[]): string[] =>
    requests.filter((url) => new URL(url).pathname.startsWith('/v1/'));
  const kept = (): Promise<string | null> =>
    page.evaluate((key) => (globalThis as unknown as InPage).sessionStorage.getItem(key), KEY);

  test('When the token holds a character no header can carry, then the page says what is wrong with the token, not that the connection is lost, and keeps asking for one', async () => {
    const watch = watchPage(page);
    await signIn(page, rig.server.url, PASTED);
    const problem = page.locator('#token-error', { hasText: 'U+2013' });
    await problem.waitFor(UNTIL);
    expect(await page.locator('#live-state').textContent()).toBe('Not signed in');
    expect(await page.locator('#token-panel').isVisible()).toBe(true);
    expect(await page.locator('#dashboard').isVisible()).toBe(false);
    expect(await kept()).toBeNull();
    expect(apiRequests(watch.requests)).toEqual([]);
  });

  test('When such a token was kept for the tab by an earlier page, then the page forgets it and asks for another, saying why', async () => {
    const watch = watchPage(page);
    await page.addInitScript(
      ([key, token]) => (globalThis as unknown as InPage).sessionStorage.setItem(key!, token!),
      [KEY, PASTED],
    );
    await page.goto(rig.server.url);
    await page.locator('#token-error', { hasText: 'U+2013' }).waitFor(UNTIL);
    expect(await page.locator('#token-panel').isVisible()).toBe(true);
    expect(apiRequests(watch.requests)).toEqual([]);
  });
});
