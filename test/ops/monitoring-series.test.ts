import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import {
  DASHBOARD_FILE,
  DASHBOARD_UID,
  dashboardExpressions,
} from '../../scripts/grafana-dashboard';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { alertRuleGroups, recordedNames } from './alert-rules';
import { labelUses, metricNames, servedNames, unservedLabelUses } from './promql-names';
import { REPO_ROOT, freePort, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * The dashboard and the alert rules of k8s/components/monitoring read only series the service
 * really serves: the real process (built-in simulator, a real PostgreSQL, relay and
 * reconciliation on) does some of everything — sends through the proxy, callbacks, a forged
 * one, a relay to an app, reconciliation lookups, readiness probes — then /metrics is scraped
 * and every metric name of every panel and rule must be among its samples.
 */

jest.setTimeout(120_000);

const TOKEN = 'monitoring-test-token';
const PROJECT = 'a1b2c3d4-e5f6-4789-8abc-def012345678';

let database: TestDatabase;
let spoolDir: string;
let service: ServiceProcess;
let customerApp: Server;
let internal: string;
let publicBase: string;
let exposition: string;

const rules = () => alertRuleGroups().flatMap((g) => g.rules);

beforeAll(async () => {
  database = await createTestDatabase(2);
  spoolDir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-monitoring-'));
  customerApp = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => customerApp.listen(0, '127.0.0.1', resolve));
  const port = await freePort();
  const internalPort = await freePort();
  const { SIGNALWIRE_SPACE_URL: _upstream, ...env } = serviceEnv(database.url, {
    PORT: String(port),
    INTERNAL_PORT: String(internalPort),
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    SIGNALWIRE_SIGNING_KEYS: SIMULATOR_SIGNING_KEY,
    SIGNALWIRE_CREDENTIALS: `${PROJECT}:PTmonitoring`,
    // Reads through DATABASE_READ_URL, here the primary itself (which it may name): the read
    // replica's lag gauge, which an alert reads, is served only with one.
    DATABASE_READ_URL: database.url,
    RECONCILE_SCHEDULE: '300ms,600ms',
    API_TOKENS: TOKEN,
    SPOOL_DIR: spoolDir,
    SHUTDOWN_DELAY_MS: '0',
    // A client beyond the public rate limit gets 429 (the dashboard and an alert read those);
    // the test's client names its own address in X-Forwarded-For, the simulator's callbacks
    // come from 127.0.0.1 and stay far below the limit.
    TRUST_PROXY: 'loopback',
    RATE_LIMIT_PUBLIC_PER_MINUTE: '30',
    // Its unauthenticated callbacks are refused 401 five times, then 429 by this budget
    // (limiter public_auth_failures), until the 31st, over the rate limit (limiter public).
    RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE: '5',
  });
  // No SIGNALWIRE_SPACE_URL: the built-in simulator is the upstream, as with `npm start`.
  service = startService(env);
  await service.waitForLog('sw-status listening', 60_000);
  internal = `http://127.0.0.1:${internalPort}`;
  publicBase = `http://127.0.0.1:${port}`;

  const callbackUrl = `http://127.0.0.1:${(customerApp.address() as AddressInfo).port}/status`;
  const send = async (to: string) => {
    const res = await fetch(`${internal}/api/messaging/messages`, {
      method: 'POST',
      headers: {
        authorization: basicAuthHeader(PROJECT, 'PTmonitoring'),
        'content-type': 'application/json',
      },
      body: JSON.stringify({ to, from: '+15559876543', body: 'hi', status_callback: callbackUrl }),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { id: string }).id;
  };
  const [delivered, , stuck] = await Promise.all([
    send('+15551230001'),
    send('+15551230003'),
    send('+15551230007'),
  ]);
  // A forged callback: a signature failure.
  const forged = await fetch(`${publicBase}/callbacks/native`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-signalwire-signature': 'f'.repeat(64) },
    body: JSON.stringify({ id: randomUUID(), status: 'delivered' }),
  });
  expect(forged.status).toBe(403);
  // A client over the public rate limit: its callbacks are answered 429.
  const limited = [];
  for (let i = 0; i < 31; i++) {
    const res = await fetch(`${publicBase}/callbacks/native`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.9' },
      body: '{}',
    });
    limited.push(res.status);
  }
  expect(limited.slice(4, 7)).toEqual([401, 429, 429]);
  expect(limited.at(-1)).toBe(429);
  expect((await fetch(`${publicBase}/readyz`)).status).toBe(200);
  // Some of everything has happened once the message is delivered, its relays went out and
  // the no-receipt message was looked up until stuck.
  const message = async (id: string) =>
    (await (
      await fetch(`${internal}/v1/messages/${id}`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      })
    ).json()) as { status: string; stuck: boolean };
  await eventually(async () => (await message(delivered!)).status === 'delivered', 30_000);
  await eventually(async () => (await message(stuck!)).stuck, 30_000);
  await eventually(async () => {
    exposition = await (await fetch(`${internal}/metrics`)).text();
    const served = servedNames(exposition);
    return (
      served.has('sw_status_relay_attempts_total') &&
      served.has('sw_status_reconcile_lookups_total')
    );
  }, 30_000);
});

afterAll(async () => {
  await service?.kill();
  await new Promise((resolve) => customerApp?.close(resolve));
  await database?.destroy();
  rmSync(spoolDir, { recursive: true, force: true });
});

test('When PromQL is read for metric names, then functions, labels, ranges and groupings are not taken for names', () => {
  expect(
    metricNames(
      'histogram_quantile(0.99, sum by (le, api) (rate(a_bucket{code="200", x=~"5.."}[5m]))) > 0.5 and on (pod) b offset 5m',
    ).sort(),
  ).toEqual(['a_bucket', 'b']);
  expect(metricNames('sum(rate(c_total[1h])) / sum(rate(d_total[1h])) > 1e3').sort()).toEqual([
    'c_total',
    'd_total',
  ]);
});

test('When /metrics is scraped, then every metric every dashboard panel reads is served', () => {
  const served = servedNames(exposition);
  const used = [...new Set(dashboardExpressions().flatMap(metricNames))].sort();
  expect(used.length).toBeGreaterThan(15);
  expect(used.filter((name) => !served.has(name))).toEqual([]);
});

test('When /metrics is scraped, then every metric every alert rule reads is served', () => {
  const served = servedNames(exposition);
  // `up` is Prometheus' own series for each target it scrapes (SwStatusDown reads it).
  const recorded = recordedNames();
  const used = [...new Set(rules().flatMap((rule) => metricNames(rule.expr)))]
    .filter((name) => name !== 'up' && !recorded.has(name))
    .sort();
  expect(used.length).toBeGreaterThan(8);
  expect(used.filter((name) => !served.has(name))).toEqual([]);
});

test('When /metrics is scraped, then every label every panel and alert rule reads (matched or grouped by) is served on its metric', () => {
  const expressions = [...dashboardExpressions(), ...rules().map((rule) => rule.expr)];
  const uses = expressions.flatMap(labelUses);
  // The labels the panels split by (outcome, status, reason, listener, api, le, code) are there.
  expect(new Set(uses.map((use) => use.label)).size).toBeGreaterThan(6);
  expect(unservedLabelUses(uses, exposition)).toEqual([]);
});

test('When the dashboard ConfigMap is committed, then it is what the generator makes, labelled for Grafana with a fixed uid', () => {
  const committed = readFileSync(DASHBOARD_FILE, 'utf8');
  const generated = execFileSync(
    process.execPath,
    ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'grafana-dashboard.ts'), '--stdout'],
    { cwd: REPO_ROOT },
  ).toString();
  expect(committed).toBe(generated);
  const configMap = yaml.load(committed) as {
    metadata: { labels: Record<string, string> };
    data: Record<string, string>;
  };
  expect(configMap.metadata.labels.grafana_dashboard).toBe('1');
  const model = JSON.parse(configMap.data['sw-status.json']!) as {
    uid: string;
    panels: Array<{ type: string; targets?: Array<{ expr: string }> }>;
  };
  expect(model.uid).toBe(DASHBOARD_UID);
  // The panels in the JSON are the ones whose expressions were checked above.
  const inJson = model.panels.flatMap((p) => p.targets?.map((t) => t.expr) ?? []);
  expect(inJson.every((expr) => dashboardExpressions().includes(expr))).toBe(true);
  expect(inJson.length).toBeGreaterThan(15);
});
