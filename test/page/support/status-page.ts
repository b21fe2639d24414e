import type { Browser } from 'playwright-core';
import { createTestApp } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';
import { listen } from '../../proxy/support';
import type { Listening } from '../../proxy/support';
import { launchChromium } from './browser';

/** What a status page test drives: Chromium, the service, and the service's internal app served. */
export interface StatusPageRig {
  readonly browser: Browser;
  readonly t: TestApp;
  readonly server: Listening;
}

/**
 * Launches Chromium, builds the service (`env` overrides the test defaults) and serves its
 * internal app (the status page's) before the file's tests; closes them after, `beforeClosing`
 * first (e.g. the file's own page). Call it in the describe block before the file's own
 * beforeAll, which then runs after this one.
 */
export function useStatusPage(
  options: {
    env?: Record<string, string>;
    beforeClosing?: () => Promise<unknown> | undefined;
  } = {},
): StatusPageRig {
  let browser: Browser | undefined;
  let t: TestApp | undefined;
  let server: Listening | undefined;

  beforeAll(async () => {
    browser = await launchChromium();
    t = await createTestApp(options.env);
    server = await listen(t.internalApp);
  });

  afterAll(async () => {
    await options.beforeClosing?.();
    await browser?.close();
    await server?.close();
    await t?.close();
  });

  return {
    get browser() {
      return browser!;
    },
    get t() {
      return t!;
    },
    get server() {
      return server!;
    },
  };
}
