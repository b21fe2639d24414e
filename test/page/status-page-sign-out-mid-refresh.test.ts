import type { Page, Route } from 'playwright-core';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, feedFollowing, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * "Updated hh:mm:ss UTC" sits in the page header (#updated, outside #dashboard) and is shown at
 * the end of every refresh. Signing out (Change token) hides it; a refresh already under way —
 * a hung service keeps one under way for up to its 15 s deadline — that ends afterwards must
 * not show it again above the token form, nor draw or announce anything.
 */
const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);
const UNTIL = { timeout: 30_000 };

describeBrowser('status page after signing out during a refresh', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage({ beforeClosing: () => page?.close() });

  beforeAll(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await page.clock.install();
    await confineTo(page, new URL(rig.server.url).origin);
  });

  test('When the reader changes token while a refresh is under way, then no "Updated" time shows on the token form', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, UNTIL.timeout);
    const held: Route[] = [];
    await page.route('**/v1/stats**', (route) => {
      held.push(route);
    });
    // The periodic refresh (30 s) starts, its stats reads held.
    await page.clock.runFor(31_000);
    // Its first read held (waited for: a loaded machine may take longer than a fixed pause),
    // then a moment for the rest of the refresh's reads.
    for (const deadline = Date.now() + UNTIL.timeout; held.length === 0;) {
      if (Date.now() > deadline) throw new Error('still waiting for the refresh’s stats reads');
      await page.waitForTimeout(50);
    }
    await page.waitForTimeout(500);
    expect(held.length).toBeGreaterThan(0);

    await page.locator('#change-token').click();
    await page.locator('#token-panel').waitFor({ state: 'visible', ...UNTIL });
    expect(await page.locator('#updated').isVisible()).toBe(false);

    // The refresh under way gets its answers (well within its 15 s deadline).
    await page.unroute('**/v1/stats**');
    for (const route of held) await route.continue();
    // Answered (not a fixed pause, which a loaded machine could outlast before the answers
    // came, passing without the refresh having ended), then time to draw.
    await Promise.all(held.map((route) => route.request().response()));
    await page.waitForTimeout(1_500);

    expect(await page.locator('#token-panel').isVisible()).toBe(true);
    const shown = await page.locator('#updated').isVisible();
    const text = await page.locator('#updated').textContent();
    expect(shown ? `visible: ${text}` : 'hidden').toBe('hidden');
  });
});
