import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from '../proxy/support';
import { startTestSweep } from '../reconcile/support';
import { confineTo, launchChromium, signIn, skipBrowserTests } from './support/browser';

/**
 * The status page's Stuck tile under the default settings. A message goes stuck only after
 * reconciliation's last step, with the default RECONCILE_SCHEDULE (10m,1h,6h,24h) 24 h after its
 * last event: it was first seen more than 24 hours ago, so GET /v1/stats's `stuck` (the stuck
 * messages first seen in the window, DESIGN §6) does not count it. The tile read that count and
 * said 0 while the stuck list beside it listed the message; it now counts the stuck list.
 *
 * The message is made stuck the way the service makes one: an SMS whose `sent` callback came
 * 24 h and 5 min ago, which SignalWire (a stub here) still says is `sent` at every lookup of
 * the sweep, run with the service's default schedule.
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };
const PROJECT = 'p1';

describeBrowser('status page stuck tile', () => {
  let t: TestApp;
  let server: { url: string; close(): Promise<void> };
  let signalWire: Server;
  let sweep: ReconcileWorker | undefined;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await launchChromium();
    t = await createTestApp();
    server = await listen(t.internalApp);
    // SignalWire's message lookup: the message is still `sent`, every time.
    signalWire = createServer((req, res) => {
      req.resume();
      const id = decodeURIComponent(
        (req.url ?? '')
          .split('/')
          .pop()!
          .replace(/\.json$/, ''),
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sid: id, status: 'sent', num_media: '0', error_code: null }));
    });
    await new Promise<void>((resolve) => signalWire.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    await page?.close();
    await browser?.close();
    await sweep?.stop();
    signalWire?.closeAllConnections();
    await new Promise((resolve) => signalWire?.close(resolve));
    await server?.close();
    await t?.close();
  });

  const api = (path: string): Promise<Response> =>
    fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${TEST_API_TOKEN}` } });

  test('When the default schedule has flagged a message stuck, then the Stuck tile counts it, though the default stats window does not', async () => {
    const schedule = t.config.reconcileSchedule;
    expect(schedule.at(-1)).toBe(24 * 3_600_000); // the default 10m,1h,6h,24h

    const event = statusEvent('sent', {
      projectId: PROJECT,
      receivedAt: new Date(Date.now() - 24 * 3_600_000 - 5 * 60_000),
    });
    await recordEvents(t.database.db, [event]);
    sweep = startTestSweep({
      db: t.database.db,
      lookup: createMessageLookup({
        baseUrl: `http://127.0.0.1:${(signalWire.address() as AddressInfo).port}`,
        credentials: new Map([[PROJECT, { projectIdAsWritten: PROJECT, token: 'PT-token' }]]),
        timeoutMs: 15_000,
      }),
      projects: [PROJECT],
      schedule,
    });
    await eventually(async () => {
      const res = await api('/v1/messages?stuck=true');
      const { data } = (await res.json()) as { data: Array<{ id: string }> };
      return data.length === 1 && data[0]!.id === event.messageId;
    }, 'the message flagged stuck');
    // The contract stands: the stats count the stuck messages first seen in their window.
    const stats = (await (await api('/v1/stats')).json()) as { stuck: number };
    expect(stats.stuck).toBe(0);

    page = await browser.newPage({ viewport: { width: 1280, height: 1800 } });
    await confineTo(page, new URL(server.url).origin);
    await signIn(page, server.url, TEST_API_TOKEN);
    await page.locator('#stuck', { hasText: event.messageId }).waitFor(UNTIL);

    const tile = page.locator('[data-figure="stuck"]');
    expect(await tile.textContent()).toBe('1');
    // Its hint says what it counts: the tile sits under "Last 24 hours", the count does not.
    const hint = page.locator('.figure', { has: tile }).locator('dd.hint');
    expect(await hint.textContent()).toBe(
      'Reconciliation gave up on these; not limited to the window.',
    );
    expect(await page.locator('#stuck tbody tr').count()).toBe(1);
  });
});
