import type { Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import {
  answerNotNow,
  confineTo,
  feedFollowing,
  recordTexts,
  signIn,
  skipBrowserTests,
  textsSeen,
  watchPage,
} from './support/browser';
import type { PageWatch } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The status page in a real headless browser while the query API answers some of its reads
 * 503 + Retry-After: the read gate's `unavailable` (too many reads waiting on the replica) or
 * a read's `query_timeout`. A refresh asks five URLs at once; the ones answered before the
 * 503 were remembered with their ETag, so the next refresh got 304s for them — and a panel
 * that had never been drawn from them stayed empty (or showed what it showed before) until its
 * data changed.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

const UNTIL = { timeout: 30_000 };
/** The page's longest back-off (a minute) and some. */
const AFTER_BACK_OFF = { timeout: 75_000 };

describeBrowser('status page while the query API answers 503', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage();

  beforeEach(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await recordTexts(page, { state: 'live-state' });
    await confineTo(page, new URL(rig.server.url).origin);
  });

  afterEach(async () => {
    await page?.close();
  });

  const statesSeen = (): Promise<string[]> => textsSeen(page, 'state');

  const openPage = async (): Promise<void> => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
  };

  test('When one read of the first load is answered 503 unavailable, then the page says what the service answered, retries by itself and fills every panel', async () => {
    const failed = statusEvent('failed', { errorCode: '30008' });
    await recordEvents(rig.t.database.db, [failed]);
    let refused = 0;
    await page.route('**/v1/messages?status=*', async (route) => {
      if (refused++ === 0) {
        // Answered last, as a read that waited its 5 s in the gate is: the others are in.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        return answerNotNow(route, 'unavailable', 1);
      }
      return route.continue();
    });
    await openPage();
    await page.locator('#failures', { hasText: failed.messageId }).waitFor(UNTIL);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    // It said what the service answered while it did: busy, not a lost connection.
    expect(await statesSeen()).toContainEqual(
      expect.stringMatching(/^Service busy or database unavailable, retrying/),
    );
    expect((await statesSeen()).filter((text) => /connection lost/i.test(text))).toEqual([]);
    // The panels whose answers came before the 503 are drawn too (not left empty by 304s).
    expect(await page.locator('#overview').textContent()).not.toBe('');
    expect(await page.locator('#statuses').textContent()).toContain('failed');
    expect(await page.locator('#stuck').textContent()).toContain('No stuck messages.');
    expect(await page.locator('#relays').textContent()).toContain('No dead relays.');
    expect(watch.consoleErrors.filter((e) => !e.includes('503'))).toEqual([]);
  });

  test('When a refresh is answered 503 query_timeout while a new failure arrives, then the page retries after Retry-After and shows the new failure', async () => {
    await openPage();
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    // Else the event below may come before the feed's cursor, and only the 30 s refresh sees it.
    await feedFollowing(watch, UNTIL.timeout);
    const before = await page.locator('#failures').textContent();

    // The next day-stats read times out; the lists answer (a new failure is in them).
    let refused = 0;
    await page.route('**/v1/stats?*', async (route) => {
      const url = new URL(route.request().url());
      if (!url.searchParams.has('bucket') && refused++ === 0) {
        return answerNotNow(route, 'query_timeout', 2);
      }
      return route.continue();
    });
    const failed = statusEvent('undelivered', { errorCode: '30003' });
    await recordEvents(rig.t.database.db, [failed], { onCommitted: rig.t.feedSignal.committed });

    await page.locator('#live-state', { hasText: /retrying/ }).waitFor(UNTIL);
    expect(refused).toBe(1);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    expect(before).not.toContain(failed.messageId);
    await page.locator('#failures', { hasText: failed.messageId }).waitFor({ timeout: 10_000 });
  });

  test('When every read and the feed are answered 503 for several seconds, then the page keeps retrying with back-off and is live again once they answer', async () => {
    await openPage();
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    let outage = true;
    let refusedDuring = 0;
    await page.route('**/v1/**', async (route) => {
      if (!outage) return route.continue();
      refusedDuring += 1;
      return answerNotNow(route, 'unavailable', 1);
    });
    // A new event wakes the feed's answer and a refresh, both refused from now on.
    const failed = statusEvent('failed', { errorCode: '30007' });
    await recordEvents(rig.t.database.db, [failed], { onCommitted: rig.t.feedSignal.committed });
    await page.locator('#live-state', { hasText: /retrying/ }).waitFor(UNTIL);
    await page.waitForTimeout(6_000);
    outage = false;
    // Retried during the outage, but backing off (not a request per millisecond).
    expect(refusedDuring).toBeGreaterThanOrEqual(2);
    expect(refusedDuring).toBeLessThan(60);
    // The next try comes after the back-off reached by then: 2^(n-1) s after n failures, at
    // most a minute (src/page/client/schedule.ts). A loaded machine stretches the outage to
    // more failures than 6 s make on a quiet one, so the wait allows the longest back-off.
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(AFTER_BACK_OFF);
    await page.locator('#failures', { hasText: failed.messageId }).waitFor(UNTIL);
  }, 240_000);

  test.each([
    ['a browser clock that agrees with the service', 0],
    // The first load's windows are then asked again by the service's clock: not a refused one.
    ['a browser clock an hour ahead', 3_600_000],
  ])(
    'When the first load is answered 503 with Retry-After (%s), then the page waits that long before it asks again',
    async (_clock, aheadMs) => {
      await page.addInitScript((ms: number) => {
        const browserNow = Date.now.bind(Date);
        Date.now = () => browserNow() + ms;
      }, aheadMs);
      const asked: number[] = [];
      let refused503At = 0;
      await page.route('**/v1/stats?*', async (route) => {
        asked.push(Date.now());
        if (refused503At === 0) {
          refused503At = Date.now();
          return answerNotNow(route, 'unavailable', 3);
        }
        return route.continue();
      });
      await openPage();
      await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
      // Both stats reads of the first load, then the next refresh's: not before Retry-After.
      expect(asked.length).toBeGreaterThanOrEqual(4);
      expect(asked[2]! - refused503At).toBeGreaterThanOrEqual(2_900);
    },
  );
});
