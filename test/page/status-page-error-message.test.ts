import type { Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { confineTo, signIn, skipBrowserTests } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * A native callback may carry an `error_message` without an `error_code` (SignalWire: "some
 * messages may have an error_message without an error_code"; the README keeps it on the
 * message and its history). The page showed an error only when there was a code: a failed
 * message whose only explanation was its error_message had "—" in Recent failures, and its
 * lookup showed no error anywhere, though the API had the text (view-model.ts errorSummary).
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);
const UNTIL = { timeout: 30_000 };
const REASON = 'Destination carrier rejected the message: spam filter';

describeBrowser('status page and an error message without a code', () => {
  let page: Page;
  const id = `0b7c1f44-2d3a-4c8e-9f00-${Date.now().toString().padStart(12, '0').slice(-12)}`;

  const rig = useStatusPage();

  beforeAll(async () => {
    await recordEvents(rig.t.database.db, [
      statusEvent('sent', { messageId: id, api: 'native' }),
      statusEvent('undelivered', { messageId: id, api: 'native', errorMessage: REASON }),
    ]);
    page = await rig.browser.newPage();
    await confineTo(page, new URL(rig.server.url).origin);
    await signIn(page, rig.server.url, TEST_API_TOKEN);
    await page.locator('#dashboard').waitFor({ state: 'visible', ...UNTIL });
  });

  test('When a failed message has an error_message but no error_code, then Recent failures shows the message in its Error column', async () => {
    const row = page.locator('#failures tbody tr', { hasText: id });
    await row.waitFor(UNTIL);
    expect(await row.locator('td').nth(4).textContent()).toBe(REASON);
  });

  test('When that message is looked up, then its Error fact and its history show the error message', async () => {
    await page.getByRole('textbox', { name: 'Message id (SID)' }).fill(id);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
    await page.locator('#lookup-result .timeline li').nth(1).waitFor(UNTIL);
    const facts = page.locator('#lookup-result dl.facts');
    // Status, API, From, To, Error.
    expect(await facts.locator('dt').nth(4).textContent()).toBe('Error');
    expect(await facts.locator('dd').nth(4).textContent()).toBe(REASON);
    expect(await page.locator('#lookup-result .event-error').allTextContents()).toEqual([REASON]);
  });
});
