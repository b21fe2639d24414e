import type { Page } from 'playwright-core';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, feedFollowing, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * A replica that got SIGTERM closes its feed signal first (main.ts `onDraining`) and keeps
 * serving for SHUTDOWN_DELAY_MS (5 s in production) and then its drain: every long-poll it
 * gets is answered at once with an empty page and the same cursor. Behind a port-forward (the
 * README's way to open the page) or a kept-alive connection the page's next long-poll goes to
 * the same pod. The page asked again at once after an empty page: 99 requests in 3 s, each a
 * database read, until the token's per-minute budget was spent (live.ts FEED_MIN_INTERVAL_MS).
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

const UNTIL = { timeout: 30_000 };
/** How long the page's requests are counted while the replica drains. */
const DRAIN_MS = 3_000;

describeBrowser('status page against a draining replica', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage();

  beforeAll(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await confineTo(page, new URL(rig.server.url).origin);
  });

  test('When the replica serving the page is draining (feed signal closed), then the page asks its change feed about once a second, not at once after every empty page', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, 30_000);

    // What main.ts does on SIGTERM before it stops serving (onDraining).
    const before = watch.requests.length;
    await rig.t.feedSignal.close();
    await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
    const feed = watch.requests
      .slice(before)
      .filter((url) => new URL(url).pathname === '/v1/events').length;
    // About one a second (as on a busy service), with room for a slow machine's timing.
    expect(feed).toBeGreaterThan(0);
    expect(feed).toBeLessThanOrEqual(2 * (DRAIN_MS / 1000) + 1);
    expect(watch.responses.filter((res) => res.status === 429)).toEqual([]);
  });
});
