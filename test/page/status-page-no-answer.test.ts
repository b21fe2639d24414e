import type { Page, Route } from 'playwright-core';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, feedFollowing, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The status page in a real headless browser when the query API stops answering without
 * closing the connection (a pod black-holed behind a kept-alive connection, a hung proxy). No
 * request failed and none had a deadline: the page said "Live" for as long as the hang lasted,
 * over figures that no longer moved, and said nowhere when they were last updated. The page's
 * clock is the test's (page.clock), so ten minutes of it take a second.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };

describeBrowser('status page when the query API stops answering', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage();

  beforeEach(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await page.clock.install();
    await confineTo(page, new URL(rig.server.url).origin);
  });

  afterEach(async () => {
    await page?.close();
  });

  /** From now on every API request is held: never answered, never failed. */
  const hang = async (): Promise<Route[]> => {
    const held: Route[] = [];
    await page.route('**/v1/**', (route) => {
      held.push(route);
    });
    return held;
  };

  /** Runs the page's clock on by `ms`, then lets the page act on what came due. */
  const runFor = async (ms: number): Promise<void> => {
    await page.clock.runFor(ms);
    await page.waitForTimeout(500);
  };

  test('When every API request hangs, then the page leaves "Live", says the connection is lost and that its figures are out of date', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, UNTIL.timeout);
    const updated = page.locator('#updated');
    expect(await updated.textContent()).toMatch(/^Updated \d\d:\d\d:\d\d UTC$/);
    expect(await updated.isVisible()).toBe(true);

    const held = await hang();
    // The long-poll under way (25 s) is past its deadline; the 30 s refresh is held, past its own.
    await runFor(40_000);
    await runFor(10 * 60_000);

    expect(held.length).toBeGreaterThan(0);
    // Waited for, not read once after runFor's fixed pause, which a loaded machine can outlast
    // before the page has acted on its timers.
    await page
      .locator('#live-state', { hasText: /^Connection lost, retrying( in \d+ s)?…$/ })
      .waitFor(UNTIL);
    // The time stays the last one the figures were from, and says they are out of date.
    await page
      .locator('#updated', { hasText: /^Not updated since \d\d:\d\d:\d\d UTC$/ })
      .waitFor(UNTIL);
    expect(await updated.textContent()).toMatch(/^Not updated since \d\d:\d\d:\d\d UTC$/);
    await page.locator('#dashboard[data-stale="true"]').waitFor({ state: 'attached', ...UNTIL });
    expect(watch.consoleErrors.filter((text) => /Content.Security.Policy/i.test(text))).toEqual([]);
  });

  test('When the API answers again after a hang, then the page is live and up to date again', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, UNTIL.timeout);
    await hang();
    await runFor(40_000);
    await runFor(2 * 60_000);
    await page.locator('#live-state', { hasText: /^Connection lost/ }).waitFor(UNTIL);

    await page.unroute('**/v1/**');
    // Past the longest back-off (a minute): both loops ask again and are answered. The feed's
    // long-poll answers at once only when there is news (else after its 25 s wait, which a busy
    // machine stretches past any bound): a callback every few seconds brings some.
    await runFor(61_000);
    const live = page.locator('#live-state', { hasText: /^Live$/ });
    for (let tries = 0; !(await live.isVisible()); tries++) {
      if (tries === 20) throw new Error('the page did not come back to "Live"');
      expect((await postCxml(rig.t.publicApp, cxmlFields())).status).toBe(200);
      await runFor(5_000);
    }
    await page.locator('#updated', { hasText: /^Updated / }).waitFor(UNTIL);
    expect(await page.locator('#dashboard').getAttribute('data-stale')).toBe('false');
  });
});
