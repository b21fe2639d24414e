import type { Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, signIn, skipBrowserTests, watchPage } from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The status page in a real headless browser on a busy service. The server answers a
 * long-poll as soon as one event is there; a page that asked again at once sent about a
 * request per commit (70–90 a second measured) and, on the query API's default per-token
 * budget (RATE_LIMIT_QUERY_PER_MINUTE, 1 200 a minute for every tab and dashboard on the
 * token), was soon answered 429 and said "Connection lost, retrying…" exactly when the
 * service was busiest.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };
const BUSY_MS = 12_000;

describeBrowser('status page on a busy service', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage(); // the default query budget: 1 200 requests a minute per token

  beforeAll(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await confineTo(page, new URL(rig.server.url).origin);
  });

  test('When events commit continuously, then one open tab follows them with about a feed request a second, stays live and is never rate limited', async () => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);

    // A busy service: a small batch commits every few milliseconds.
    const started = Date.now();
    const asked = watch.requests.length;
    let committed = 0;
    while (Date.now() - started < BUSY_MS) {
      await recordEvents(rig.t.database.db, [statusEvent('sent')], {
        onCommitted: rig.t.feedSignal.committed,
      });
      committed += 1;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const seconds = (Date.now() - started) / 1000;
    const during = watch.requests.slice(asked).map((url) => new URL(url).pathname);
    const feed = during.filter((path) => path === '/v1/events').length;
    const limited = watch.responses.filter((res) => res.status === 429);
    console.log(
      `${committed} commits in ${seconds.toFixed(1)} s: ${feed} feed requests ` +
        `(${(feed / seconds).toFixed(1)}/s), ${during.length} requests in all; 429s: ${limited.length}`,
    );

    // About one a second (each starts a second after the last, the pages not being full),
    // far inside the token's 20 a second shared by every tab.
    expect(feed / seconds).toBeLessThanOrEqual(2);
    // With the panels' refreshes (four requests, at most every 5 s while events arrive): about
    // 110 a minute, so that ten tabs fit the token's budget. A refresh a second after every
    // page of events made about 240 (4 a second).
    expect(during.length / seconds).toBeLessThanOrEqual(3);
    expect(limited).toEqual([]);
    expect(await page.locator('#live-state').textContent()).toBe('Live');
    // And it did follow the feed: the panels show the commits.
    await page.locator('#dashboard[data-last-event]').waitFor({ state: 'attached', ...UNTIL });
    expect(watch.consoleErrors).toEqual([]);
  });
});
