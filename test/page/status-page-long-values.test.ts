import type { Locator, Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, signIn, skipBrowserTests } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The status page in a real headless browser with the longest values callbacks may bring:
 * `to`, `from` and `error_code` up to 256 characters (src/callbacks/normalize.ts), an
 * `error_message` of any length, often without a space (a long number, a URL). Such a value
 * widened a table past the screen, its Status and Error columns with it, and the lookup's
 * timeline and facts with it.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };
const SCREEN = { width: 1280, height: 900 };

/**
 * Elements whose right edge is past the screen (only the outermost of each such branch), and
 * the page's width. A string: it runs in the page, whose DOM this file is not typed against.
 */
const OVERFLOW = `(() => {
  const width = document.documentElement.clientWidth;
  const past = (node) => node.getBoundingClientRect().width > 0 && node.getBoundingClientRect().right > width + 1;
  const offenders = [...document.querySelectorAll('body *')]
    .filter((node) => past(node) && !(node.parentElement && past(node.parentElement)))
    .map((node) => node.tagName.toLowerCase() + (node.id ? '#' + node.id : '') + '.' + [...node.classList].join('.'));
  return { scrollWidth: document.documentElement.scrollWidth, offenders };
})()`;

const overflow = (page: Page): Promise<{ scrollWidth: number; offenders: string[] }> =>
  page.evaluate<{ scrollWidth: number; offenders: string[] }>(OVERFLOW);

/** How many lines a cell's text takes: the distinct tops of its text's boxes. */
const lines = (cell: Locator): Promise<number> =>
  cell.evaluate((node) => {
    const range = node.ownerDocument.createRange();
    range.selectNodeContents(node);
    return new Set([...range.getClientRects()].map((box) => Math.round(box.top))).size;
  });

describeBrowser('status page with long values', () => {
  let page: Page;

  const rig = useStatusPage();

  beforeEach(async () => {
    page = await rig.browser.newPage({ viewport: SCREEN });
    await confineTo(page, new URL(rig.server.url).origin);
  });

  afterEach(async () => {
    await page?.close();
  });

  const lookUp = async (id: string): Promise<void> => {
    await page.getByRole('textbox', { name: 'Message id (SID)' }).fill(id);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
  };

  test('When a failed message has a 256-character number as `to`, then the failures table fits the screen with its Status and Error columns on it', async () => {
    const failed = statusEvent('failed', { to: `+1${'5'.repeat(254)}`, errorCode: '30003' });
    await recordEvents(rig.t.database.db, [failed]);
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    const row = page.locator('#failures tbody tr', { hasText: failed.messageId });
    await row.waitFor(UNTIL);
    const error = (await row.locator('td').nth(4).boundingBox())!;
    expect(error.x + error.width).toBeLessThanOrEqual(SCREEN.width);
    expect(await overflow(page)).toEqual({ scrollWidth: SCREEN.width, offenders: [] });
  });

  test('When a looked-up message has long unbroken values (`from`, an error code, a URL in its error message), then its facts and timeline fit the screen', async () => {
    const id = `SMlong${Date.now()}`;
    const url = `https://carrier.example/reject/${'a1b2c3d4'.repeat(40)}`;
    await recordEvents(rig.t.database.db, [
      statusEvent('sent', { messageId: id, from: `+1${'7'.repeat(254)}` }),
      statusEvent('undelivered', {
        messageId: id,
        from: `+1${'7'.repeat(254)}`,
        errorCode: `E${'9'.repeat(255)}`,
        errorMessage: `Carrier violation, see ${url}`,
      }),
    ]);
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#dashboard').waitFor({ state: 'visible', ...UNTIL });
    await lookUp(id);
    await page.locator('#lookup-result .event-error').first().waitFor(UNTIL);
    expect(await page.locator('#lookup-result').textContent()).toContain(url);
    expect(await overflow(page)).toEqual({ scrollWidth: SCREEN.width, offenders: [] });
  });

  test("When a failure has an ordinary number and a long error reason, then its number, its status and the error mix's API stay whole on one line", async () => {
    const failed = statusEvent('undelivered', { errorCode: '30003' });
    await recordEvents(rig.t.database.db, [failed]);
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    const row = page.locator('#failures tbody tr', { hasText: failed.messageId });
    await row.waitFor(UNTIL);
    const status = row.locator('td').nth(3);
    expect(await status.textContent()).toBe('undelivered');
    expect(await lines(status)).toBe(1);
    expect(await lines(row.locator('td').nth(2))).toBe(1);
    const mix = page.locator('#errors tbody tr', { hasText: '30003' }).first();
    await mix.waitFor(UNTIL);
    expect(await lines(mix.locator('td').nth(2))).toBe(1);
  });

  test('When a link names a message that does not exist, then the page says so with the id set apart, as text', async () => {
    const id = '<b>Call 555-0100 to verify your account</b>';
    await signIn(page, `${rig.server.url}/#message=${encodeURIComponent(id)}`, TEST_API_TOKEN);
    const notice = page.locator('#lookup-result .notice');
    await notice.filter({ hasText: 'No message with id' }).waitFor(UNTIL);
    expect(await notice.textContent()).toBe(`No message with id ${id}.`);
    expect(await notice.locator('code').textContent()).toBe(id);
    expect(await notice.locator('b').count()).toBe(0);
  });
});
