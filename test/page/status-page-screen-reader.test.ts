import type { Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import {
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
 * The status page in a real headless browser, as a keyboard and screen-reader user meets it:
 * the focus ring was amber (#f2a900, 2:1 on white; WCAG 1.4.11 asks 3:1), the polite live
 * region was rewritten with every refresh ("N messages, delivery rate X %." every 5 s on a busy
 * service), and the lookup's result was a live region drawn anew on every event of the message
 * shown, so its whole history was read out again each time.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };

/** WCAG's contrast ratio of two computed colours (`rgb(r, g, b)`). */
function contrast(a: string, b: string): number {
  const luminance = (css: string): number => {
    const [r, g, bl] = (css.match(/\d+(\.\d+)?/g) ?? []).slice(0, 3).map((v) => {
      const s = Number(v) / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    }) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [luminance(a), luminance(b)];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}

/** The focused element's ring and what is around it. A string: it runs in the page. */
const FOCUS_RING = `(() => {
  const focused = document.activeElement;
  const style = getComputedStyle(focused);
  return {
    text: focused.textContent,
    visible: focused.matches(':focus-visible'),
    outline: style.outlineStyle + ' ' + style.outlineWidth,
    color: style.outlineColor,
    panel: getComputedStyle(focused.closest('.panel')).backgroundColor,
    page: getComputedStyle(document.body.parentElement).backgroundColor,
  };
})()`;

describeBrowser('status page for keyboard and screen-reader users', () => {
  let page: Page;
  let watch: PageWatch;

  const rig = useStatusPage();

  beforeEach(async () => {
    page = await rig.browser.newPage();
    watch = watchPage(page);
    await recordTexts(page, { announce: 'announce', lookup: 'lookup-announce' });
    await confineTo(page, new URL(rig.server.url).origin);
  });

  afterEach(async () => {
    await page?.close();
  });

  const openLive = async (): Promise<void> => {
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await feedFollowing(watch, UNTIL.timeout);
  };

  const stored = async (rawStatus: string, messageId?: string): Promise<string> => {
    const event = statusEvent(rawStatus, messageId ? { messageId } : {});
    await recordEvents(rig.t.database.db, [event], { onCommitted: rig.t.feedSignal.committed });
    return event.messageId;
  };

  test('When a control has keyboard focus, then its focus ring contrasts at least 3:1 with the panel and the page around it (WCAG 1.4.11)', async () => {
    await openLive();
    await page.getByRole('textbox', { name: 'Message id (SID)' }).focus();
    await page.keyboard.press('Tab');
    const ring = await page.evaluate<{
      text: string;
      visible: boolean;
      outline: string;
      color: string;
      panel: string;
      page: string;
    }>(FOCUS_RING);
    expect(ring).toMatchObject({ text: 'Look up', visible: true, outline: 'solid 3px' });
    expect(contrast(ring.color, ring.panel)).toBeGreaterThanOrEqual(3);
    expect(contrast(ring.color, ring.page)).toBeGreaterThanOrEqual(3);
  });

  test('When messages keep arriving and the figures change with every refresh, then the polite live region says nothing new', async () => {
    await openLive();
    // The summary, once, when the page opened.
    expect(await textsSeen(page, 'announce')).toEqual([
      expect.stringMatching(/messages, delivery rate/),
    ]);
    // A steady flow, a message a second: the panels refresh every 5 s, the counts change each time.
    const before = await page.locator('[data-figure="total"]').textContent();
    for (let i = 0; i < 15; i++) {
      await stored('delivered');
      await page.waitForTimeout(1_000);
    }
    expect(await page.locator('[data-figure="total"]').textContent()).not.toBe(before);
    expect(await textsSeen(page, 'announce')).toHaveLength(1);
  });

  test('When the message shown by the lookup gets a new event, then only that event is said, not the whole history again', async () => {
    const id = await stored('sent');
    await openLive();
    await page.getByRole('textbox', { name: 'Message id (SID)' }).fill(id);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
    await page.locator('#lookup-result h3', { hasText: id }).waitFor(UNTIL);
    expect(await page.locator('#lookup-result').getAttribute('aria-live')).toBeNull();
    await page.locator('#lookup-announce', { hasText: `${id}: sent, 1 event` }).waitFor(UNTIL);

    await stored('delivered', id);
    await page.locator('#lookup-result .event-status', { hasText: 'delivered' }).waitFor(UNTIL);
    await page.locator('#lookup-announce', { hasText: 'new event' }).waitFor(UNTIL);
    expect(await textsSeen(page, 'lookup')).toEqual([
      `${id}: sent, 1 event in its history.`,
      `${id}: new event, delivered via callback.`,
    ]);
  });
});
