import type { Page, Route } from 'playwright-core';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, feedFollowing, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The page marks its figures out of date by the browser's monotonic clock: timed by the wall
 * clock, a step back of an hour (NTP after a laptop resumes) kept figures minutes old
 * labelled "Updated …" while the page said the connection was lost, for as long as the step.
 */
const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);
const UNTIL = { timeout: 30_000 };

describeBrowser('status page after a step of the browser’s wall clock', () => {
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

  const runFor = async (ms: number): Promise<void> => {
    await page.clock.runFor(ms);
    await page.waitForTimeout(500);
  };

  test('When the clock steps back an hour and then the service stops answering for minutes, then the figures are marked out of date', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, UNTIL.timeout);
    // The wall clock steps back an hour; timers (and performance.now) go on.
    const wall = await page.evaluate(() => Date.now());
    await page.clock.setSystemTime(wall - 60 * 60_000);
    const held: Route[] = [];
    await page.route('**/v1/**', (route) => {
      held.push(route);
    });
    await runFor(40_000);
    await runFor(4 * 60_000);
    expect(held.length).toBeGreaterThan(0);
    await page
      .locator('#live-state', { hasText: /^Connection lost, retrying( in \d+ s)?…$/ })
      .waitFor(UNTIL);
    // Over four minutes without an update: out of date (STALE_AFTER_MS is one minute).
    await runFor(10_000);
    expect(await page.locator('#dashboard').getAttribute('data-stale')).toBe('true');
    expect(await page.locator('#updated').textContent()).toMatch(/^Not updated since /);
  });
  test('When the machine wakes after 8 hours with the network not back, then the figures are marked out of date at the next check', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, UNTIL.timeout);
    const held: Route[] = [];
    await page.route('**/v1/**', (route) => {
      held.push(route);
    });
    // Asleep 8 hours: the wall clock went on, performance.now() (and the timers) did not.
    const wall = await page.evaluate(() => Date.now());
    await page.clock.setSystemTime(wall + 8 * 60 * 60_000);
    // Awake 6 s: the check (every 5 s) has run once.
    await runFor(6_000);
    expect(await page.locator('#dashboard').getAttribute('data-stale')).toBe('true');
    expect(await page.locator('#updated').textContent()).toMatch(/^Not updated since /);
  });
});
