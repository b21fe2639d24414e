import type { Page, Request } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { confineTo, skipBrowserTests } from './support/browser';
import { useStatusPage } from './support/status-page';

/**
 * The token form stays usable while a sign-in's first load runs (main.ts): a second Enter, or
 * a corrected token, signs in again before the first is done. Each sign-in starts the feed and
 * the panels' refreshes once its first load ends; only the current one may, or "Change token"
 * stops one of them and the other goes on asking with a token the reader dropped — and writes
 * "Live" above the token form.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(60_000);

const UNTIL = { timeout: 30_000 };
const TOKEN_A = 'sign-in-token-aaaaaaaaaaaa';
const TOKEN_B = 'sign-in-token-bbbbbbbbbbbb';

describeBrowser('status page signed in twice during its first load', () => {
  let page: Page;

  const rig = useStatusPage({
    env: { API_TOKENS: `${TOKEN_A},${TOKEN_B}` },
    beforeClosing: () => page?.close(),
  });

  test('When a second token is submitted while the first one’s load is under way, then after Change token no request goes out with either, and the page asks for a token', async () => {
    page = await rig.browser.newPage();
    await confineTo(page, new URL(rig.server.url).origin);
    const asked: Array<{ at: number; token: string; path: string }> = [];
    page.on('request', (req: Request) => {
      const auth = req.headers()['authorization'];
      if (auth)
        asked.push({ at: Date.now(), token: auth.slice(7), path: new URL(req.url()).pathname });
    });
    // Token A's first stats request is held until token B's sign-in is under way.
    let releaseA!: () => void;
    const heldA = new Promise<void>((resolve) => (releaseA = resolve));
    let holdingA!: () => void;
    const aIsHeld = new Promise<void>((resolve) => (holdingA = resolve));
    let aAnswered!: () => void;
    const aDone = new Promise<void>((resolve) => (aAnswered = resolve));
    let held = false;
    await page.route('**/v1/stats**', async (route) => {
      if (!held && route.request().headers()['authorization'] === `Bearer ${TOKEN_A}`) {
        held = true;
        // That request's answer, not the next of any request the page makes.
        const heldRequest = route.request();
        page.on('requestfinished', (finished) => {
          if (finished === heldRequest) aAnswered();
        });
        holdingA();
        await heldA;
      }
      await route.continue();
    });

    await page.goto(`${rig.server.url}/`);
    const input = page.getByRole('textbox', { name: 'API token' });
    const submit = page.getByRole('button', { name: 'Open the status page' });
    await input.fill(TOKEN_A);
    await submit.click();
    await aIsHeld;
    // The reader corrects the token while the first load is still under way.
    await input.fill(TOKEN_B);
    await submit.click();
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    // Now A's first load ends, after B's.
    releaseA();
    await aDone;
    await page.waitForTimeout(500);

    await page.getByRole('button', { name: 'Change token' }).click();
    await page.locator('#token-panel').waitFor({ state: 'visible' });
    const signedOut = Date.now();
    // An event: a feed still following would be answered, ask again and refresh the panels.
    await recordEvents(rig.t.database.db, [statusEvent('failed')], {
      onCommitted: rig.t.feedSignal.committed,
    });
    await page.waitForTimeout(4_000);

    expect(asked.filter(({ at }) => at > signedOut)).toEqual([]);
    expect(await page.locator('#live-state').textContent()).toBe('Enter an API token');
    // Both tokens were used: the test did sign in twice.
    expect(new Set(asked.map(({ token }) => token))).toEqual(new Set([TOKEN_A, TOKEN_B]));
  });

  test('When a reader signs in again and again, then the page keeps one chart and one set of window resize listeners', async () => {
    const again = await rig.browser.newPage();
    try {
      await confineTo(again, new URL(rig.server.url).origin);
      // Counts the window's resize listeners as the page adds and removes them.
      await again.addInitScript(() => {
        type Listen = (type: string, ...rest: unknown[]) => void;
        const page = globalThis as unknown as {
          resizeListeners: number;
          addEventListener: Listen;
          removeEventListener: Listen;
        };
        page.resizeListeners = 0;
        const add = page.addEventListener.bind(page);
        const remove = page.removeEventListener.bind(page);
        page.addEventListener = (type, ...rest) => {
          if (type === 'resize') page.resizeListeners++;
          add(type, ...rest);
        };
        page.removeEventListener = (type, ...rest) => {
          if (type === 'resize') page.resizeListeners--;
          remove(type, ...rest);
        };
      });
      await again.goto(`${rig.server.url}/`);
      const signInWith = async (token: string): Promise<void> => {
        await again.getByRole('textbox', { name: 'API token' }).fill(token);
        await again.getByRole('button', { name: 'Open the status page' }).click();
        await again.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
        await again.locator('#throughput-chart canvas').first().waitFor(UNTIL);
      };
      const listeners = (): Promise<number> =>
        again.evaluate(
          () => (globalThis as unknown as { resizeListeners: number }).resizeListeners,
        );

      await signInWith(TOKEN_A);
      const afterFirst = await listeners();
      for (const token of [TOKEN_B, TOKEN_A, TOKEN_B]) {
        await again.getByRole('button', { name: 'Change token' }).click();
        await again.locator('#token-panel').waitFor({ state: 'visible' });
        await signInWith(token);
      }

      expect(afterFirst).toBeGreaterThan(0);
      expect(await listeners()).toBe(afterFirst);
      expect(await again.locator('#throughput-chart canvas').count()).toBe(1);
    } finally {
      await again.close();
    }
  });
});
