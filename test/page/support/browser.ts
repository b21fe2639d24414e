import { existsSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { Browser, Page, Route } from 'playwright-core';
import { eventually } from '../../helpers/eventually';

/**
 * Debian's chromium, driven by playwright-core (no browser download). CI installs it
 * (.ci/run); elsewhere a missing browser fails the browser tests with the command that
 * installs it, unless SW_SKIP_BROWSER_TESTS=1 says to skip them on purpose.
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const skipBrowserTests = process.env.SW_SKIP_BROWSER_TESTS === '1';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The browser tests need Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\` ` +
        '(Debian/Ubuntu; .ci/run does this in CI), or set CHROMIUM_PATH to another Chromium. ' +
        'To skip the browser tests on purpose, set SW_SKIP_BROWSER_TESTS=1.',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    // Root (CI) cannot use Chromium's sandbox; /dev/shm is small in containers.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/** Opens the status page at `url` and signs in with `token`, as a reader does. */
export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.getByRole('textbox', { name: 'API token' }).fill(token);
  await page.getByRole('button', { name: 'Open the status page' }).click();
}

/** What a page did: console errors, uncaught exceptions, and every URL it asked for. */
export interface PageWatch {
  consoleErrors: string[];
  requests: string[];
  /** Status of every finished response, with its URL. */
  responses: Array<{ url: string; status: number }>;
}

export function watchPage(page: Page): PageWatch {
  const watch: PageWatch = { consoleErrors: [], requests: [], responses: [] };
  page.on('response', (res) => watch.responses.push({ url: res.url(), status: res.status() }));
  page.on('console', (message) => {
    if (message.type() === 'error') watch.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => watch.consoleErrors.push(`uncaught: ${error.message}`));
  page.on('request', (req) => watch.requests.push(req.url()));
  return watch;
}

/**
 * Until the page's feed follows with long-polls. Its first request, from `now`, does not wait:
 * an event committed before that request is behind the page's cursor and wakes nothing (the
 * panels then refresh only after 30 s). From the first long-poll on, an event answers it, and
 * the feed's next request meets whatever the test routes.
 */
export async function feedFollowing(watch: PageWatch, timeoutMs: number): Promise<void> {
  const longPoll = (url: string) => url.includes('/v1/events?') && url.includes('wait=25');
  await eventually(() => watch.requests.some(longPoll), 'the feed long-polling', timeoutMs);
}

/**
 * Every request the page makes to another origin is aborted (and recorded by watchPage):
 * the page must load nothing from the internet.
 */
export async function confineTo(page: Page, origin: string): Promise<void> {
  await page.route('**/*', (route) =>
    new URL(route.request().url()).origin === origin ? route.continue() : route.abort(),
  );
}

const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
}

/**
 * axe-core run in the page (its source evaluated over the DevTools protocol, which the page's
 * Content-Security-Policy does not govern, so the policy stays as served). Violations of
 * every impact are returned.
 */
export async function runAxe(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(`${AXE_SOURCE}\n;undefined`);
  return page.evaluate(async () => {
    // Runs in the page: its globals, typed here without the DOM library.
    const { axe, document } = globalThis as unknown as {
      document: unknown;
      axe: {
        run(
          context: unknown,
          options: object,
        ): Promise<{
          violations: Array<{ id: string; impact: string | null; help: string; nodes: unknown[] }>;
        }>;
      };
    };
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.length,
    }));
  });
}

/**
 * Bytes the page has transferred so far, as Chromium counts them (Network.loadingFinished's
 * encodedDataLength: headers and body as they came over the wire), and how many responses.
 * Start it before the page is opened.
 */
export async function measureTransfer(
  page: Page,
): Promise<{ bytes(): number; responses(): string[] }> {
  const cdp = await page.context().newCDPSession(page);
  const urls = new Map<string, string>();
  const finished: string[] = [];
  let total = 0;
  cdp.on('Network.requestWillBeSent', (event) => urls.set(event.requestId, event.request.url));
  cdp.on('Network.loadingFinished', (event) => {
    total += event.encodedDataLength;
    finished.push(urls.get(event.requestId) ?? '?');
  });
  await cdp.send('Network.enable');
  return { bytes: () => total, responses: () => [...finished] };
}

const NOT_NOW_MESSAGES = {
  unavailable: 'Too many query API reads are waiting on this replica; retry shortly',
  query_timeout: 'The query did not finish within 5 s: narrow it and retry',
  rate_limited: 'Too many requests; retry after the Retry-After delay',
} as const;

/**
 * Answers a request the way the service says "not now", for page.route: a 503 of the read gate
 * (`unavailable`, src/db/read-gate.ts) or of a read past its statement timeout
 * (`query_timeout`, src/db/read-timeout.ts), or a 429 (`rate_limited`, src/http/rate-limit.ts),
 * with Retry-After, in the documented error shape.
 */
export function answerNotNow(
  route: Route,
  code: keyof typeof NOT_NOW_MESSAGES,
  retryAfterSeconds: number,
): Promise<void> {
  return route.fulfill({
    status: code === 'rate_limited' ? 429 : 503,
    headers: { 'Retry-After': String(retryAfterSeconds), 'Content-Type': 'application/json' },
    body: JSON.stringify({
      error: { code, message: NOT_NOW_MESSAGES[code], request_id: 'r-test' },
    }),
  });
}

/**
 * Records every text the page's elements with these ids show, however briefly (each under its
 * key); textsSeen reads them back. Call before the page is opened.
 */
export async function recordTexts(page: Page, ids: Record<string, string>): Promise<void> {
  await page.addInitScript(`
    window.textsSeen = {};
    document.addEventListener('DOMContentLoaded', () => {
      for (const [key, id] of Object.entries(${JSON.stringify(ids)})) {
        const node = document.getElementById(id);
        window.textsSeen[key] = [];
        new MutationObserver(() => window.textsSeen[key].push(node.textContent)).observe(node, {
          childList: true,
          characterData: true,
          subtree: true,
        });
      }
    });
  `);
}

export function textsSeen(page: Page, key: string): Promise<string[]> {
  return page.evaluate(
    (which) => (globalThis as unknown as { textsSeen: Record<string, string[]> }).textsSeen[which]!,
    key,
  );
}
