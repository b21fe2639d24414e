import { Client } from 'pg';
import type { Page, Route } from 'playwright-core';
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
 * The status page in a real headless browser, on the real service and database, when the
 * query API answers "not now": 503 (the read gate full, a read past its statement timeout, the
 * database away) or 429 (the token's budget spent), both with Retry-After. The page said
 * "Connection lost" though the service had answered, and a lookup so answered was not asked
 * again: the reader saw an error and had to ask again by hand.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(60_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };
/** Timers fire a little early or late; a browser's clock and the test's differ by as much. */
const SLACK_MS = 150;
const BUSY = 'Service busy or database unavailable';

/** The service's own 503 and 429 answers, by status. */
function refuse(route: Route, status: 503 | 429, retryAfter: number) {
  return answerNotNow(route, status === 503 ? 'unavailable' : 'rate_limited', retryAfter);
}

describeBrowser('status page when the query API answers 503 or 429', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage();

  beforeEach(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await recordTexts(page, { state: 'live-state', lookup: 'lookup-result' });
    await confineTo(page, new URL(rig.server.url).origin);
  });

  afterEach(async () => {
    await page?.close();
  });

  const seen = (key: 'state' | 'lookup'): Promise<string[]> => textsSeen(page, key);

  const openPage = async (hash = ''): Promise<void> => {
    await signIn(page, `${rig.server.url}/${hash}`, TEST_API_TOKEN);
  };

  const openLive = async (): Promise<void> => {
    await openPage();
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
  };

  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  const following = (): Promise<void> => feedFollowing(watch, UNTIL.timeout);

  const lookUp = async (id: string): Promise<void> => {
    await page.getByRole('textbox', { name: 'Message id (SID)' }).fill(id);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
  };

  /** When the page asked for one message (Date.now() in the test), answered or not. */
  const askedFor = (id: string): number[] => {
    const times: number[] = [];
    page.on('request', (req) => {
      if (new URL(req.url()).pathname === `/v1/messages/${id}`) times.push(Date.now());
    });
    return times;
  };

  const stored = async (rawStatus = 'sent') => {
    const event = statusEvent(rawStatus);
    await recordEvents(rig.t.database.db, [event], { onCommitted: rig.t.feedSignal.committed });
    return event.messageId;
  };

  describe('the live state', () => {
    test('When the query API answers 503 unavailable, then the page says the service is busy and when it asks again, not that the connection is lost', async () => {
      await openLive();
      let outage = true;
      await page.route('**/v1/**', (route) => (outage ? refuse(route, 503, 3) : route.continue()));
      // An event answers the feed's long-poll; its next request, and the refresh, are refused.
      await stored('failed');
      await page.locator('#live-state', { hasText: BUSY }).waitFor(UNTIL);
      // Retry-After: 3, and the back-off never asks sooner. The first text said so: a second
      // refused loop (the refresh, a second after the feed) says the sooner of the two, by then
      // about 2 s — what a read a second late on a loaded machine would see.
      const first = (await seen('state')).find((text) => text.startsWith(BUSY));
      const seconds = Number(/retrying in (\d+) s…$/.exec(first!)?.[1]);
      expect(seconds).toBeGreaterThanOrEqual(3);
      outage = false;
      await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
      const states = await seen('state');
      expect(states.filter((text) => text.startsWith(BUSY))).not.toEqual([]);
      expect(states.filter((text) => /connection lost/i.test(text))).toEqual([]);
    });

    test('When the service answers again after 503s, then the page says live within seconds, not after a long-poll of 25 s', async () => {
      await openLive();
      await following();
      let outage = true;
      await page.route('**/v1/**', (route) => (outage ? refuse(route, 503, 1) : route.continue()));
      await stored('failed');
      await page.locator('#live-state', { hasText: BUSY }).waitFor(UNTIL);
      // A few failures of both loops: their back-off is a few seconds by now.
      await pause(4_000);
      outage = false;
      const ended = Date.now();
      await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
      // The feed's first request after a failure answered at once; a long-poll held it 25 s.
      expect(Date.now() - ended).toBeLessThan(20_000);
    });

    test('When requests get no answer at all, then the page says the connection is lost', async () => {
      await openLive();
      let down = true;
      await page.route('**/v1/**', (route) =>
        down ? route.abort('connectionrefused') : route.continue(),
      );
      await stored('failed');
      await page.locator('#live-state', { hasText: /^Connection lost, retrying/ }).waitFor(UNTIL);
      down = false;
      await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
      expect((await seen('state')).filter((text) => text.startsWith(BUSY))).toEqual([]);
    });

    test('When the query API answers 429 with Retry-After, then the page says there were too many requests and waits that long before it asks again', async () => {
      await openLive();
      let limited = true;
      const feedAsked: Array<{ at: number; refused: boolean }> = [];
      await page.route('**/v1/**', (route) => {
        if (new URL(route.request().url()).pathname === '/v1/events') {
          feedAsked.push({ at: Date.now(), refused: limited });
        }
        return limited ? refuse(route, 429, 2) : route.continue();
      });
      await stored('failed');
      await page
        .locator('#live-state', { hasText: /^Too many requests, retrying in [2-9] s…$/ })
        .waitFor(UNTIL);
      await pause(3_000);
      limited = false;
      await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
      // Each feed request after a 429 came no sooner than its Retry-After.
      const refusals = feedAsked.filter((ask) => ask.refused);
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      for (const [i, ask] of feedAsked.entries()) {
        const next = feedAsked[i + 1];
        if (ask.refused && next) expect(next.at - ask.at).toBeGreaterThanOrEqual(2_000 - SLACK_MS);
      }
      expect((await seen('state')).filter((text) => /connection lost/i.test(text))).toEqual([]);
    });

    test('When the first load is answered 503, then the page says the service is busy, not that it did not answer', async () => {
      let refused = 0;
      await page.route('**/v1/stats?*', (route) =>
        refused++ === 0 ? refuse(route, 503, 2) : route.continue(),
      );
      await openLive();
      const states = await seen('state');
      expect(states).toContain(`${BUSY}, retrying in 2 s…`);
      expect(states.filter((text) => /did not answer|connection lost/i.test(text))).toEqual([]);
    });
  });

  describe('a message lookup', () => {
    test('When a lookup is answered 503 with Retry-After, then the page says so, asks again after that long by itself and shows the message', async () => {
      const id = await stored('sent');
      await openLive();
      const asked = askedFor(id);
      let refused = 0;
      await page.route(`**/v1/messages/${id}`, (route) =>
        refused++ < 2 ? refuse(route, 503, 2) : route.continue(),
      );
      await lookUp(id);
      await page
        .locator('#lookup-result', { hasText: `${BUSY}, retrying the lookup in 2 s…` })
        .waitFor(UNTIL);
      await page.locator('#lookup-result h3', { hasText: id }).waitFor(UNTIL);
      expect(asked).toHaveLength(3);
      expect(asked[1]! - asked[0]!).toBeGreaterThanOrEqual(2_000 - SLACK_MS);
      expect(asked[2]! - asked[1]!).toBeGreaterThanOrEqual(2_000 - SLACK_MS);
      expect(await page.locator('#lookup-result').textContent()).toContain('sent');
    });

    test('When a lookup is answered 429, then it is asked again after Retry-After', async () => {
      const id = await stored('delivered');
      await openLive();
      let refused = 0;
      await page.route(`**/v1/messages/${id}`, (route) =>
        refused++ === 0 ? refuse(route, 429, 1) : route.continue(),
      );
      await lookUp(id);
      await page.locator('#lookup-result h3', { hasText: id }).waitFor(UNTIL);
      expect(await seen('lookup')).toContain('Too many requests, retrying the lookup in 1 s…');
    });

    test('When a lookup keeps being answered 503, then the page gives up after four tries and says so', async () => {
      const id = await stored('sent');
      await openLive();
      const asked = askedFor(id);
      await page.route(`**/v1/messages/${id}`, (route) => refuse(route, 503, 1));
      await lookUp(id);
      await page
        .locator('#lookup-result', {
          hasText: `Could not look up ${id}: service busy or database unavailable after 4 tries. Try again later.`,
        })
        .waitFor(UNTIL);
      await pause(2_500);
      expect(asked).toHaveLength(4);
    });

    test('When the reader looks up another message while a lookup waits to be asked again, then the first is not asked again', async () => {
      const first = await stored('sent');
      const second = await stored('delivered');
      await openLive();
      const asked = askedFor(first);
      await page.route(`**/v1/messages/${first}`, (route) => refuse(route, 503, 2));
      await lookUp(first);
      await page.locator('#lookup-result', { hasText: 'retrying the lookup' }).waitFor(UNTIL);
      await lookUp(second);
      await page.locator('#lookup-result h3', { hasText: second }).waitFor(UNTIL);
      await pause(3_000);
      expect(asked).toHaveLength(1);
      expect(await page.locator('#lookup-result h3').textContent()).toBe(second);
    });

    test('When the reader empties the field while a lookup waits to be asked again, then it is not asked again', async () => {
      const id = await stored('sent');
      await openLive();
      const asked = askedFor(id);
      await page.route(`**/v1/messages/${id}`, (route) => refuse(route, 503, 2));
      await lookUp(id);
      await page.locator('#lookup-result', { hasText: 'retrying the lookup' }).waitFor(UNTIL);
      await page.getByRole('textbox', { name: 'Message id (SID)' }).fill('');
      await page.locator('#lookup-result', { hasText: 'Lookup cancelled.' }).waitFor(UNTIL);
      await pause(3_000);
      expect(asked).toHaveLength(1);
      expect(await page.locator('#lookup-result').textContent()).toBe('Lookup cancelled.');
    });

    test('When a lookup is answered 404 or 400, then it is not asked again', async () => {
      await openLive();
      const unknown = `SM-unknown-${Date.now()}`;
      const askedUnknown = askedFor(unknown);
      await lookUp(unknown);
      await page
        .locator('#lookup-result', { hasText: `No message with id ${unknown}.` })
        .waitFor(UNTIL);
      // A 400 (the service answers none for a lookup today: any error but 404 and the retried
      // 503/429 is one), reached through a #message= link.
      const tooLong = 'x'.repeat(65);
      await page.route(`**/v1/messages/${tooLong}`, (route) =>
        route.fulfill({
          status: 400,
          contentType: 'application/json',
          body: JSON.stringify({
            error: { code: 'invalid_request', message: 'refused', request_id: 'r-1' },
          }),
        }),
      );
      const askedTooLong = askedFor(tooLong);
      await page.evaluate((hash) => {
        (globalThis as unknown as { location: { hash: string } }).location.hash = hash;
      }, `#message=${tooLong}`);
      await page.locator('#lookup-result', { hasText: 'The lookup failed' }).waitFor(UNTIL);
      await pause(2_500);
      expect(askedUnknown).toHaveLength(1);
      expect(askedTooLong).toHaveLength(1);
      expect(watch.responses.filter((res) => res.url.includes(tooLong))).toEqual([
        expect.objectContaining({ status: 400 }),
      ]);
    });

    test('When the message shown is reloaded for a new event and the reload is answered 503, then it stays shown and is reloaded after Retry-After', async () => {
      const id = await stored('sent');
      await openLive();
      await lookUp(id);
      await page.locator('#lookup-result h3', { hasText: id }).waitFor(UNTIL);
      // The new event must come through the feed: it is recorded once the feed follows.
      await following();
      const asked = askedFor(id);
      let refused = 0;
      await page.route(`**/v1/messages/${id}`, (route) =>
        refused++ === 0 ? refuse(route, 503, 1) : route.continue(),
      );
      await recordEvents(
        rig.t.database.db,
        [statusEvent('delivered', { messageId: id, receivedAt: new Date() })],
        { onCommitted: rig.t.feedSignal.committed },
      );
      await page.locator('#lookup-result .event-status', { hasText: 'delivered' }).waitFor(UNTIL);
      expect(asked.length).toBeGreaterThanOrEqual(2);
      expect(asked[1]! - asked[0]!).toBeGreaterThanOrEqual(1_000 - SLACK_MS);
      // The message was shown all along: no error, no notice in its place.
      expect((await seen('lookup')).filter((text) => !text.startsWith(id))).toEqual([]);
    });

    test('When the database is locked so that the service itself answers the lookup 503 query_timeout, then the page asks again after its Retry-After and shows the message once the lock is gone', async () => {
      const id = await stored('sent');
      await openLive();
      const asked = askedFor(id);
      const locker = new Client({ connectionString: rig.t.database.url });
      await locker.connect();
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE messages IN ACCESS EXCLUSIVE MODE');
        await lookUp(id);
        // The read waits for the lock until its statement timeout (5 s): a real 503.
        await page
          .locator('#lookup-result', { hasText: `${BUSY}, retrying the lookup in 5 s…` })
          .waitFor(UNTIL);
        await locker.query('COMMIT');
      } finally {
        await locker.end();
      }
      await page.locator('#lookup-result h3', { hasText: id }).waitFor(UNTIL);
      expect(watch.responses.filter((res) => res.url.endsWith(`/v1/messages/${id}`))).toEqual([
        expect.objectContaining({ status: 503 }),
        expect.objectContaining({ status: 200 }),
      ]);
      // The read took its 5 s, then the page waited the 5 s Retry-After said.
      expect(asked[1]! - asked[0]!).toBeGreaterThanOrEqual(10_000 - SLACK_MS);
    });
  });
});
