import type { Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The status page in a real headless browser whose clock is minutes slow, as a laptop's can be.
 * Its windows ("the last 24 hours", the throughput of the last hour) ended at the browser's
 * now, minutes ago: the latest messages were missing from a page that said "Live". They end at
 * the service's now, which the page learns from its answers' Date headers.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(60_000);

const UNTIL = { timeout: 30_000 };
const SLOW_MS = 3 * 60_000;

describeBrowser('status page with a slow browser clock', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage({ beforeClosing: () => page?.close() });

  beforeAll(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await confineTo(page, new URL(rig.server.url).origin);
    // The browser's clock three minutes behind the service's.
    await page.addInitScript((slowMs: number) => {
      const browserNow = Date.now.bind(Date);
      Date.now = () => browserNow() - slowMs;
    }, SLOW_MS);
  });

  test('When messages arrived a moment ago, then the page counts them, its windows end at the service’s now, and every panel is drawn', async () => {
    const failed = statusEvent('undelivered', { errorCode: '30003' });
    await recordEvents(rig.t.database.db, [statusEvent('delivered'), failed]);
    const opened = Date.now();
    await signIn(page, `${rig.server.url}/`, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);

    await page.locator('[data-figure="total"]', { hasText: /^2$/ }).waitFor(UNTIL);
    // The lists were answered in the same round as the windows the page asked again: drawn too.
    await page.locator('#failures', { hasText: failed.messageId }).waitFor(UNTIL);
    const windowsAsked = watch.requests
      .filter((url) => url.includes('/v1/stats?'))
      .map((url) => Date.parse(new URL(url).searchParams.get('created_until')!));
    expect(windowsAsked.length).toBeGreaterThan(0);
    // The last windows asked for end at or after the service's now when the page was opened
    // (learnt from a Date header: to the second), not minutes before it. Not after the test's
    // now: a window asked just before a minute's end, ending at it, is checked just after.
    expect(Math.min(...windowsAsked.slice(-2))).toBeGreaterThan(opened - 1_000);
  });
});
