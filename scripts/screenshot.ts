import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres';
import { freePort } from '../src/db/free-port';
import { createLogger } from '../src/logger';
import { basicAuthHeader } from '../src/signalwire/basic-auth';

/**
 * `npm run screenshot`: docs/status-page.png, the README's picture of the status page. Starts
 * the service as `npm start` does (built-in simulator) on a throw-away embedded PostgreSQL,
 * sends messages in several of the simulator's scenarios, lets reconciliation find a lost
 * callback and give up on a message (stuck), lets a relay to a failing app go dead, then opens
 * the page in Debian's chromium, signs in, looks a message up and takes the picture.
 */

const ROOT = path.resolve(__dirname, '..');
const OUT = path.join(ROOT, 'docs', 'status-page.png');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = 'screenshot-token';
const PROJECT = 'b2c3d4e5-f6a7-4890-9bcd-ef0123456789';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, check: () => Promise<T | false>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await check();
    if (value !== false) return value;
    if (Date.now() > deadline) throw new Error(`screenshot: gave up waiting for ${what}`);
    await pause(200);
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-screenshot-'));
  const logger = createLogger('warn');
  const postgres = await startEmbeddedPostgres(logger, {
    dataDir: path.join(work, 'postgres'),
    ephemeral: true,
    command: 'npm run screenshot',
  });
  // An app whose own status callback always fails: its relays end dead.
  const failingApp = createServer((_req, res) => {
    res.statusCode = 503;
    res.end();
  });
  await new Promise<void>((resolve) => failingApp.listen(0, '127.0.0.1', resolve));
  const [port, internalPort] = [await freePort(), await freePort()];
  const service = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      INTERNAL_PORT: String(internalPort),
      DATABASE_URL: postgres.url,
      API_TOKENS: TOKEN,
      SIGNALWIRE_CREDENTIALS: `${PROJECT}:PTscreenshot`,
      RECONCILE_SCHEDULE: '1s,2s',
      RELAY_RETRY_SCHEDULE: '100ms',
      SPOOL_DIR: path.join(work, 'spool'),
      SHUTDOWN_DELAY_MS: '0',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const internal = `http://127.0.0.1:${internalPort}`;
  const api = async <T>(pathname: string): Promise<T> => {
    const res = await fetch(`${internal}${pathname}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    if (!res.ok) throw new Error(`${pathname}: ${res.status}`);
    return (await res.json()) as T;
  };
  try {
    await until('the service', async () =>
      fetch(`${internal}/healthz`).then(
        (res) => res.ok,
        () => false,
      ),
    );
    const failing = `http://127.0.0.1:${(failingApp.address() as AddressInfo).port}/status`;
    const send = async (to: string, callback?: string): Promise<string> => {
      const res = await fetch(`${internal}/api/messaging/messages`, {
        method: 'POST',
        headers: {
          authorization: basicAuthHeader(PROJECT, 'PTscreenshot'),
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          to,
          from: '+15559876543',
          body: 'Your order has shipped',
          ...(callback && { status_callback: callback }),
        }),
      });
      if (res.status !== 201) throw new Error(`send: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    };
    // Mostly delivered, some undelivered and failed, one lost callback, one without receipt.
    const recipients = [
      ...Array.from({ length: 34 }, (_, i) => `+1555300${String(1100 + i)}`),
      '+15553000003',
      '+15553010003',
      '+15553020003',
      '+15553000004',
      '+15553010004',
      '+15553000008',
      '+15553000007',
    ];
    let undelivered = '';
    for (const [index, to] of recipients.entries()) {
      const id = await send(to, index === 0 ? failing : undefined);
      if (to === '+15553000003') undelivered = id;
      // A little spread, so the throughput chart is not a single point.
      if (index % 8 === 7) await pause(1_500);
    }
    await until('every message final or stuck', async () => {
      const stats = await api<{ total: number; stuck: number; by_status: Record<string, number> }>(
        '/v1/stats',
      );
      const final =
        (stats.by_status.delivered ?? 0) +
        (stats.by_status.undelivered ?? 0) +
        (stats.by_status.failed ?? 0);
      return stats.total === recipients.length && stats.stuck === 1 && final === stats.total - 1;
    });
    await until('a dead relay', async () => {
      const relays = await api<{ data: unknown[] }>('/v1/relays?state=dead');
      return relays.data.length > 0;
    });

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(internal);
      await page.getByRole('textbox', { name: 'API token' }).fill(TOKEN);
      await page.getByRole('button', { name: 'Open the status page' }).click();
      await page.locator('#dashboard').waitFor({ state: 'visible' });
      await page.getByLabel('Message id (SID)').fill(undelivered);
      await page.getByRole('button', { name: 'Look up', exact: true }).click();
      await page.locator('#lookup-result ol.timeline').waitFor();
      await page.locator('#live-state', { hasText: 'Live' }).waitFor();
      mkdirSync(path.dirname(OUT), { recursive: true });
      await page.screenshot({ path: OUT, fullPage: true });
      console.log(`wrote ${path.relative(ROOT, OUT)}`);
    } finally {
      await browser.close();
    }
  } finally {
    service.kill('SIGTERM');
    await new Promise((resolve) => service.once('exit', resolve));
    await new Promise((resolve) => failingApp.close(resolve));
    await postgres.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
