import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { recordEvents } from '../../src/messages/record-events';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { E2E_PROJECT, E2E_TOKEN, startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { eventually } from '../relay/support';
import {
  confineTo,
  launchChromium,
  measureTransfer,
  runAxe,
  signIn,
  skipBrowserTests,
  watchPage,
} from './support/browser';
import type { PageWatch } from './support/browser';

/**
 * The status page in a real headless browser (Debian's chromium through playwright-core),
 * against the whole service over real sockets: messages sent through the send proxy to the
 * simulator in several scenarios, callbacks to the receiver, a relay worker delivering to an
 * app that always fails (a dead relay), a reconciliation sweep (a message found delivered by
 * lookup, a message that stays stuck).
 */

const describeBrowser = skipBrowserTests ? describe.skip : describe;
jest.setTimeout(120_000);

/** Long enough for a hang to become a readable failure; nothing is timed against it. */
const UNTIL = { timeout: 30_000 };

describeBrowser('status page', () => {
  let stack: Stack;
  let failingApp: Server;
  let relay: RelayWorker;
  let sweep: ReconcileWorker;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let watch: PageWatch;
  let transfer: Awaited<ReturnType<typeof measureTransfer>>;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    browser = await launchChromium();
    stack = await startStack({
      simulator: { stepDelayMs: 10, credentials: { projectId: E2E_PROJECT, token: E2E_TOKEN } },
      env: { RELAY_RETRY_SCHEDULE: '50ms' },
    });
    // An app whose own status callback always fails: its relay ends dead.
    failingApp = createServer((_req, res) => {
      res.statusCode = 503;
      res.end();
    });
    await new Promise<void>((resolve) => failingApp.listen(0, '127.0.0.1', resolve));
    const { db } = stack.app.database;
    const { logger } = stack.app.deps;
    relay = createRelay({ config: stack.app.config, db, logger, tuning: { pollMs: 20 } });
    relay.start();
    sweep = createReconcileWorker({
      db,
      logger,
      lookup: createMessageLookup({
        baseUrl: stack.sim.url,
        credentials: new Map([
          [E2E_PROJECT, { projectIdAsWritten: E2E_PROJECT, token: E2E_TOKEN }],
        ]),
        timeoutMs: 15_000,
      }),
      schedule: [300, 600],
      rate: 100,
      projects: [E2E_PROJECT],
      storeBody: false,
      recordOptions: { onRelaysEnqueued: relay.wake, onCommitted: stack.app.feedSignal.committed },
      pollMs: 50,
      statsEveryMs: 100,
    });
    sweep.start();

    const failingUrl = `http://127.0.0.1:${(failingApp.address() as AddressInfo).port}/status`;
    const body = 'Your order has shipped';
    [ids.relayed, ids.outOfOrder, ids.delivered, ids.lost, ids.undelivered, ids.failed, ids.stuck] =
      await Promise.all([
        stack.send('cxml', '+15551230001', { body, statusCallback: failingUrl }),
        stack.send('cxml', '+15551230006', { body }),
        stack.send('native', '+15551230001', { body }),
        stack.send('native', '+15551230008', { body }),
        stack.send('cxml', '+15551230003', { body }),
        stack.send('native', '+15551230004', { body }),
        stack.send('native', '+15551230007', { body }),
      ]);
    await stack.sim.waitForIdle();
    // Every scenario has played out, the lost callback's truth was found by lookup, the
    // no-receipt message is stuck and the relay to the failing app is dead.
    const expected: Record<string, string> = {
      relayed: 'delivered',
      outOfOrder: 'delivered',
      delivered: 'delivered',
      lost: 'delivered',
      undelivered: 'undelivered',
      failed: 'failed',
      stuck: 'sent',
    };
    for (const [name, status] of Object.entries(expected)) {
      await eventually(async () => {
        const message = await stack.message(ids[name]!);
        if (message?.status === status && (name !== 'stuck' || message.stuck)) return true;
        throw new Error(`${name}: ${JSON.stringify(message)}`);
      }, 30_000);
    }
    await eventually(async () => {
      const res = await api(`/v1/relays?message_id=${ids.relayed!}`);
      const { data } = (await res.json()) as { data: Array<{ state: string }> };
      // One relay per relayed event; the circuit breaker may hold the later ones back.
      if (data.some((relay) => relay.state === 'dead')) return true;
      throw new Error(`relay: ${JSON.stringify(data)}`);
    }, 30_000);

    context = await browser.newContext({ viewport: { width: 1280, height: 1800 } });
    page = await context.newPage();
    watch = watchPage(page);
    transfer = await measureTransfer(page);
    await confineTo(page, new URL(stack.internalUrl).origin);
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await sweep?.stop();
    await relay?.stop();
    await new Promise((resolve) => failingApp?.close(resolve));
    await stack?.close();
  });

  const api = (path: string): Promise<Response> =>
    fetch(`${stack.internalUrl}${path}`, {
      headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
    });
  const figure = (key: string) => page.locator(`[data-figure="${key}"]`);

  test('When a wrong token is entered, then the page says the service refused it and shows no data', async () => {
    const other = await context.newPage();
    await other.goto(stack.internalUrl);
    // By keyboard alone: the token field has the focus, Enter submits.
    await other.getByRole('textbox', { name: 'API token' }).waitFor(UNTIL);
    await other.keyboard.type('not-a-token');
    await other.keyboard.press('Enter');
    await other.getByRole('alert').filter({ hasText: '401' }).waitFor(UNTIL);
    expect(await other.getByRole('alert').textContent()).toMatch(/refused this token.*API_TOKENS/);
    expect(await other.locator('#dashboard').isHidden()).toBe(true);
    // The sign-in form, with its error shown, is accessible too.
    const violations = await runAxe(other);
    console.log(`axe-core on the sign-in form: ${JSON.stringify(violations)}`);
    expect(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')).toEqual([]);
    await other.close();
  });

  test('When the right token is entered, then the first view shows the delivery rate, counts and error mix with reasons, in under 200 KB', async () => {
    await signIn(page, stack.internalUrl, TEST_API_TOKEN);
    await page.locator('#dashboard').waitFor({ state: 'visible', ...UNTIL });

    // 4 delivered (one after a lookup found it), 1 undelivered, 1 failed; 1 still at sent.
    expect(await figure('delivery-rate').textContent()).toBe('66.7 %');
    expect(await figure('total').textContent()).toBe('7');
    expect(await figure('stuck').textContent()).toBe('1');
    const statuses = await page.locator('#statuses tbody tr').allTextContents();
    expect(statuses).toEqual(
      expect.arrayContaining(['delivered4', 'undelivered1', 'failed1', 'sent1']),
    );
    const errors = await page.locator('#errors tbody tr').allTextContents();
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringContaining('30003Destination handset unreachablecxml1'),
        expect.stringContaining('unknown_errorUnknown carrier errornative1'),
      ]),
    );
    expect(await page.locator('#failures').textContent()).toContain(ids.undelivered);
    expect(await page.locator('#failures').textContent()).toContain(ids.failed);
    expect(await page.locator('#throughput-chart canvas').count()).toBe(1);
    expect(await page.locator('#throughput-summary').textContent()).toMatch(
      /^7 messages in the last hour, 2 not delivered/,
    );

    // Everything loaded so far (page, script, stylesheet, the first API answers): the
    // long-poll still open is not finished, so not counted.
    const bytes = transfer.bytes();
    console.log(
      `status page first view: ${bytes} bytes in ${transfer.responses().length} responses`,
    );
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(200 * 1024);
  });

  test('When stuck messages and dead relays exist, then the page lists them', async () => {
    expect(await page.locator('#stuck').textContent()).toContain(ids.stuck);
    // One relay per stored event of the message (sent, delivered), each given up on.
    const relays = await page.locator('#relays tbody tr').allTextContents();
    expect(relays.length).toBeGreaterThan(0);
    for (const row of relays) expect(row).toMatch(new RegExp(`^${ids.relayed!}.*HTTP 503`));
  });

  test('When more messages complete, then the page follows the feed and the figures change without a reload', async () => {
    const navigations: string[] = [];
    page.on('framenavigated', (frame) => navigations.push(frame.url()));
    const more = await Promise.all([
      stack.send('cxml', '+15551239001', { body: 'more' }),
      stack.send('native', '+15551239002', { body: 'more' }),
      stack.send('cxml', '+15551239003', { body: 'more' }),
    ]);
    await stack.sim.waitForIdle();
    // 7 delivered of 9 final.
    await figure('delivery-rate').filter({ hasText: '77.8 %' }).waitFor(UNTIL);
    await figure('total').filter({ hasText: '10' }).waitFor(UNTIL);
    expect(navigations).toEqual([]);
    for (const id of more) expect((await stack.message(id))?.status).toBe('delivered');
  });

  test('When a message is looked up, then its history is a timeline with sources, late arrivals and conflicts marked', async () => {
    // The lost callback: the proxy's and the callbacks' events (in arrival order: the
    // simulator's first callback may beat the proxy's own record), then the lookup that
    // found it delivered.
    await page.getByLabel('Message id (SID)').fill(ids.lost!);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
    const timeline = page.locator('#lookup-result ol.timeline');
    await timeline.waitFor(UNTIL);
    const sources = await timeline.locator('[data-source]').allTextContents();
    expect(sources).toContain('via proxy');
    expect(sources).toContain('via callback');
    expect(sources[sources.length - 1]).toBe('via reconcile');
    expect(await timeline.locator('li').last().textContent()).toContain('delivered');

    // Out of order: sent arrived after delivered and did not move the message back.
    await page.getByLabel('Message id (SID)').fill(ids.outOfOrder!);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
    await page.locator('#lookup-result h3').filter({ hasText: ids.outOfOrder! }).waitFor(UNTIL);
    const late = page.locator('#lookup-result li', { hasText: 'arrived late' });
    expect(await late.locator('.event-status').allTextContents()).toContain('sent');

    // A second, different final status: a conflict. The page shows it while it is open.
    await page.getByLabel('Message id (SID)').fill(ids.delivered!);
    await page.getByRole('button', { name: 'Look up', exact: true }).click();
    await page.locator('#lookup-result h3').filter({ hasText: ids.delivered! }).waitFor(UNTIL);
    await recordEvents(
      stack.app.database.db,
      [
        statusEvent('undelivered', {
          messageId: ids.delivered!,
          api: 'native',
          projectId: E2E_PROJECT,
          errorCode: 'unreachable_destination_handset',
        }),
      ],
      { onCommitted: stack.app.feedSignal.committed },
    );
    await page.locator('[data-warning="conflict"]').waitFor(UNTIL);
    expect(await page.locator('#lookup-result li.conflicting').count()).toBe(2);

    // From a list, by keyboard: the stuck message's id is a button that opens it.
    await page
      .locator('#stuck')
      .getByRole('button', { name: `Look up ${ids.stuck!}` })
      .focus();
    await page.keyboard.press('Enter');
    await page.locator('[data-warning="stuck"]').waitFor(UNTIL);

    // The view is a link: #message=<id> opens that message (here the undelivered one).
    expect(new URL(page.url()).hash).toBe(`#message=${ids.stuck!}`);
    await page.goto(`${stack.internalUrl}/#message=${ids.undelivered!}`);
    await page.locator('#lookup-result h3').filter({ hasText: ids.undelivered! }).waitFor(UNTIL);
    expect(await page.locator('#lookup-result li').last().textContent()).toContain('30003');
  });

  test('When the page has been used, then it had no console errors and asked nothing but itself and the API of its own origin', async () => {
    const origin = new URL(stack.internalUrl).origin;
    expect(watch.requests.length).toBeGreaterThan(5);
    expect(watch.requests.filter((url) => new URL(url).origin !== origin)).toEqual([]);
    // The page itself is one request: nothing it needs can come from another release's pod
    // during a rolling update. Everything else it asked for is the API.
    const paths = watch.requests.map((url) => new URL(url).pathname);
    expect(paths.filter((path) => path !== '/' && !path.startsWith('/v1/'))).toEqual([]);
    // A script or stylesheet the page's policy refused would be a console error here.
    expect(watch.consoleErrors).toEqual([]);
    // Panels that did not change were revalidated, not sent again.
    const api = watch.responses.filter((r) => new URL(r.url).pathname.startsWith('/v1/'));
    expect(api.filter((r) => r.status === 304).length).toBeGreaterThan(0);
    expect(api.filter((r) => r.status !== 200 && r.status !== 304)).toEqual([]);
  });

  test('When axe-core checks the page, then it finds no serious or critical violations', async () => {
    const violations = await runAxe(page);
    console.log(`axe-core on the status page: ${JSON.stringify(violations)}`);
    const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    expect(serious).toEqual([]);
  });

  test('When the browser goes offline and back, then the page says so, waits, and catches up', async () => {
    // After the console check: the long-poll cut by the lost network is logged as an error.
    await context.setOffline(true);
    await page.locator('#live-state', { hasText: 'Offline' }).waitFor(UNTIL);
    const id = await stack.send('cxml', '+15551239004', { body: 'while offline' });
    await stack.sim.waitForIdle();
    expect((await stack.message(id))?.status).toBe('delivered');
    await context.setOffline(false);
    await page.locator('#live-state', { hasText: /^Live$/ }).waitFor(UNTIL);
    await figure('total').filter({ hasText: /^11$/ }).waitFor(UNTIL);
  });
});
