import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { PROMTOOL, alertRuleGroups, alertRules, runPromtoolTest } from './alert-rules';

/**
 * The alert rules of k8s/components/monitoring/prometheusrule.yaml through Prometheus' own
 * tool (Debian's `prometheus` package; .ci/run installs it): `promtool check rules` parses
 * every expression and annotation template, `promtool test rules` evaluates some alerts over
 * synthetic series and checks when they fire and when they do not.
 */

const run = promisify(execFile);
const groups = alertRuleGroups();

let work: string;
beforeAll(() => {
  if (!existsSync(PROMTOOL)) {
    throw new Error(
      `promtool not found at ${PROMTOOL}: install it with \`apt-get install -y prometheus\` (Debian; .ci/run does this), or set PROMTOOL_PATH`,
    );
  }
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-rules-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

test('When promtool checks the PrometheusRule’s groups, then every rule parses', async () => {
  const file = path.join(work, 'rules.yaml');
  writeFileSync(file, yaml.dump({ groups }));
  const { stdout } = await run(PROMTOOL, ['check', 'rules', file]);
  const count = groups.reduce((n, g) => n + g.rules.length, 0);
  expect(stdout).toContain(`SUCCESS: ${count} rules found`);
});

test('When an alert is written, then it has a severity, a summary, a description and a for: of at least 5 minutes', () => {
  const minutes = (d: string): number => Number(/^(\d+)m$/.exec(d)?.[1] ?? NaN);
  for (const rule of alertRules()) {
    expect(rule).toMatchObject({
      alert: expect.stringMatching(/^SwStatus/),
      labels: { severity: expect.stringMatching(/^(warning|critical)$/) },
      annotations: { summary: expect.any(String), description: expect.any(String) },
    });
    expect(minutes(rule.for ?? '')).toBeGreaterThanOrEqual(5);
  }
});

test('When an alert tells the on-call what to run, then the production image has it: node dist/… of a real entry point, never npm (the image has none)', () => {
  const descriptions = groups.flatMap((g) =>
    g.rules.map((rule) => rule.annotations?.description ?? ''),
  );
  const text = descriptions.join('\n').replace(/\s+/g, ' ');
  expect(text).not.toMatch(/\bnpm\b/);
  const scripts = [...text.matchAll(/\bnode (dist\/\S+)\.js\b/g)].map((m) => m[1]!);
  expect(scripts.length).toBeGreaterThan(0);
  for (const script of scripts) {
    expect(
      existsSync(path.join(__dirname, '..', '..', script.replace(/^dist/, 'src') + '.ts')),
    ).toBe(true);
  }
});

/** Runs `promtool test rules` over the rules with these test groups, and expects it to pass. */
async function expectPromtoolTestPasses(name: string, testGroups: unknown[]): Promise<void> {
  expect((await runPromtoolTest(work, name, testGroups)).output).toContain('SUCCESS');
}

const ns = 'namespace="sw-status"';

test('When series show each trouble, then promtool test rules sees the alerts fire, and stay silent for the healthy ones', async () => {
  await expectPromtoolTestPasses('troubles', [
    {
      interval: '1m',
      input_series: [
        // One pod's spool keeps growing (database out), another's drains.
        { series: `sw_status_spool_depth{${ns},pod="sw-status-0"}`, values: '5+1x40' },
        { series: `sw_status_spool_depth{${ns},pod="sw-status-1"}`, values: '400-10x40' },
        // One pod's readiness flips every minute, another's once.
        {
          series: `sw_status_readiness_changes_total{${ns},pod="sw-status-0"}`,
          values: '0+1x30',
        },
        {
          series: `sw_status_readiness_changes_total{${ns},pod="sw-status-1"}`,
          values: '0x10 1x20',
        },
        // A key rotated at SignalWire only, at minute 15: the callbacks that need their
        // signature, 4 a minute, verified until then and are all refused from then on, while
        // 96 a minute come by their token (never signature-checked).
        { series: `sw_status_callbacks_total{${ns},outcome="recorded"}`, values: '0+96x50' },
        {
          series: `sw_status_callbacks_total{${ns},outcome="refused_invalid_signature"}`,
          values: '0x15 4+4x35',
        },
        {
          series: `sw_status_callback_signature_failures_total{${ns},reason="mismatch"}`,
          values: '0x15 4+4x35',
        },
        { series: `sw_status_callback_signatures_verified_total{${ns}}`, values: '0+4x15 60x35' },
        // Dead relays: one more every 5 minutes, as each pod reports it.
        { series: `sw_status_relay_dead{${ns},pod="sw-status-0"}`, values: '0+0.2x60' },
        { series: `sw_status_relay_dead{${ns},pod="sw-status-1"}`, values: '0+0.2x60' },
        // sw-status-3 spools for ten minutes of an outage, then is scaled down with its spool
        // full (its series end); sw-status-2 is restarted with an empty spool and returns.
        { series: `sw_status_spool_depth{${ns},pod="sw-status-3"}`, values: '50+5x10' },
        { series: `sw_status_spool_depth{${ns},pod="sw-status-2"}`, values: '0x10 _x3 0x40' },
        // One pod's node lost time synchronisation: 3 s ahead of the database; another's
        // clock is a few milliseconds off.
        { series: `sw_status_clock_offset_seconds{${ns},pod="sw-status-0"}`, values: '3x30' },
        {
          series: `sw_status_clock_offset_seconds{${ns},pod="sw-status-1"}`,
          values: '-0.004x30',
        },
        // A new pod starts while the database is out: its relay and reconciliation gauges
        // are unknown (NaN) until the first look, then the unchanged database-wide counts.
        { series: `sw_status_reconcile_stuck{${ns},pod="sw-status-0"}`, values: '7x90' },
        {
          series: `sw_status_reconcile_stuck{${ns},pod="sw-status-4"}`,
          values: 'NaN NaN NaN NaN NaN 7x85',
        },
      ],
      alert_rule_test: [
        { eval_time: '5m', alertname: 'SwStatusClockSkew', exp_alerts: [] },
        {
          eval_time: '15m',
          alertname: 'SwStatusClockSkew',
          exp_alerts: [
            {
              exp_labels: { severity: 'warning', namespace: 'sw-status', pod: 'sw-status-0' },
            },
          ],
        },
        { eval_time: '10m', alertname: 'SwStatusSpoolNotDraining', exp_alerts: [] },
        {
          eval_time: '30m',
          alertname: 'SwStatusSpoolNotDraining',
          exp_alerts: [
            {
              exp_labels: {
                severity: 'critical',
                namespace: 'sw-status',
                pod: 'sw-status-0',
              },
            },
          ],
        },
        {
          eval_time: '25m',
          alertname: 'SwStatusReadinessFlapping',
          exp_alerts: [
            {
              exp_labels: { severity: 'warning', namespace: 'sw-status', pod: 'sw-status-0' },
            },
          ],
        },
        { eval_time: '8m', alertname: 'SwStatusSignatureFailures', exp_alerts: [] },
        // Refused since minute 16, none verified in the 10 minutes before 25, 10 minutes more.
        { eval_time: '30m', alertname: 'SwStatusSignatureFailures', exp_alerts: [] },
        {
          eval_time: '40m',
          alertname: 'SwStatusSignatureFailures',
          exp_alerts: [{ exp_labels: { severity: 'critical', namespace: 'sw-status' } }],
        },
        {
          eval_time: '50m',
          alertname: 'SwStatusDeadRelaysGrowing',
          exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
        },
        { eval_time: '50m', alertname: 'SwStatusStuckMessagesGrowing', exp_alerts: [] },
        { eval_time: '20m', alertname: 'SwStatusSpoolOrphaned', exp_alerts: [] },
        {
          eval_time: '40m',
          alertname: 'SwStatusSpoolOrphaned',
          exp_alerts: [
            { exp_labels: { severity: 'critical', namespace: 'sw-status', pod: 'sw-status-3' } },
          ],
        },
      ],
    },
  ]);
});

test('When a pod spools during an outage, then SwStatusSpoolVolumeFilling fires while the volume still has room — at a pace that fills it within the hour, or under a tenth left — and not for a pod whose spool is small or drains', async () => {
  const GiB = 1024 ** 3;
  const MiB = 1024 ** 2;
  await expectPromtoolTestPasses('spool-volume', [
    {
      interval: '1m',
      input_series: [
        // sw-status-0: 500 callbacks/s into a 1Gi claim, about 37 MiB a minute: full at minute 28.
        { series: `sw_status_spool_depth{${ns},pod="sw-status-0"}`, values: '0+30000x40' },
        {
          series: `sw_status_spool_volume_available_bytes{${ns},pod="sw-status-0"}`,
          values: `${GiB}-${37 * MiB}x27 0x12`,
        },
        {
          series: `sw_status_spool_volume_size_bytes{${ns},pod="sw-status-0"}`,
          values: `${GiB}x40`,
        },
        // sw-status-1: a trickle, 1 MiB a minute into the same size: days of room.
        { series: `sw_status_spool_depth{${ns},pod="sw-status-1"}`, values: '0+800x40' },
        {
          series: `sw_status_spool_volume_available_bytes{${ns},pod="sw-status-1"}`,
          values: `${GiB}-${MiB}x40`,
        },
        {
          series: `sw_status_spool_volume_size_bytes{${ns},pod="sw-status-1"}`,
          values: `${GiB}x40`,
        },
        // sw-status-2: a volume nearly full of something else, with an empty spool.
        { series: `sw_status_spool_depth{${ns},pod="sw-status-2"}`, values: '0x40' },
        {
          series: `sw_status_spool_volume_available_bytes{${ns},pod="sw-status-2"}`,
          values: `${10 * MiB}x40`,
        },
        {
          series: `sw_status_spool_volume_size_bytes{${ns},pod="sw-status-2"}`,
          values: `${GiB}x40`,
        },
      ],
      alert_rule_test: [
        { eval_time: '3m', alertname: 'SwStatusSpoolVolumeFilling', exp_alerts: [] },
        {
          eval_time: '20m',
          alertname: 'SwStatusSpoolVolumeFilling',
          exp_alerts: [
            { exp_labels: { severity: 'critical', namespace: 'sw-status', pod: 'sw-status-0' } },
          ],
        },
      ],
    },
  ]);
});

test('When anyone posts forged signatures — a few among token traffic, or many beside genuine signed callbacks — then SwStatusSignatureFailures stays silent', async () => {
  await expectPromtoolTestPasses('forged-signatures', [
    {
      // Every callback by its token; one forged request every 3 minutes.
      interval: '1m',
      input_series: [
        { series: `sw_status_callbacks_total{${ns},outcome="recorded"}`, values: '0+100x60' },
        {
          series: `sw_status_callback_signature_failures_total{${ns},reason="mismatch"}`,
          values:
            '0 0 0 1 1 1 2 2 2 3 3 3 4 4 4 5 5 5 6 6 6 7 7 7 8 8 8 9 9 9 10 10 10 11 11 11 12',
        },
        { series: `sw_status_callback_signatures_verified_total{${ns}}`, values: '0x60' },
      ],
      alert_rule_test: [
        { eval_time: '35m', alertname: 'SwStatusSignatureFailures', exp_alerts: [] },
      ],
    },
    {
      // Signed callbacks keep verifying, 4 a minute, while a forger sends 30 a minute.
      interval: '1m',
      input_series: [
        { series: `sw_status_callbacks_total{${ns},outcome="recorded"}`, values: '0+100x60' },
        {
          series: `sw_status_callback_signature_failures_total{${ns},reason="mismatch"}`,
          values: '0x20 30+30x40',
        },
        { series: `sw_status_callback_signatures_verified_total{${ns}}`, values: '0+4x60' },
      ],
      alert_rule_test: [
        { eval_time: '55m', alertname: 'SwStatusSignatureFailures', exp_alerts: [] },
      ],
    },
  ]);
});

/** A counter sampled each minute for `minutes`: `step` more at each minute `when` says. */
function counterEvery(minutes: number, step: number, when: (minute: number) => boolean): string {
  const values: number[] = [];
  let value = 0;
  for (let minute = 0; minute <= minutes; minute++) {
    if (when(minute)) value += step;
    values.push(value);
  }
  return values.join(' ');
}

test('When signed callbacks are sparse (a message not sent through the proxy every 15 minutes) and the signing key is rotated at SignalWire only, then SwStatusSignatureFailuresSparse warns — and nothing fires while they keep verifying beside a forger, or for a forged request in a quiet night', async () => {
  // A message's three callbacks verify (3), or each is refused on all of SignalWire's 3 tries
  // (9): as the real service counts them (found by review, from its /metrics). Refusals 15
  // minutes apart never held SwStatusSignatureFailures' condition for its `for: 10m`.
  const everyQuarter = (minute: number) => minute % 15 === 0;
  const signatureAlerts = (eval_time: string, sparse: Array<{ exp_labels: object }>) => [
    { eval_time, alertname: 'SwStatusSignatureFailures', exp_alerts: [] },
    { eval_time, alertname: 'SwStatusSignatureFailuresSparse', exp_alerts: sparse },
  ];
  const warning = { exp_labels: { severity: 'warning', namespace: 'sw-status' } };
  await expectPromtoolTestPasses('sparse-signed-callbacks', [
    {
      interval: '1m',
      input_series: [
        {
          series: `sw_status_callback_signatures_verified_total{${ns}}`,
          values: counterEvery(180, 3, (m) => everyQuarter(m) && m < 60),
        },
        {
          // Served from 0 (src/metrics/metrics.ts), so the first refusals count too.
          series: `sw_status_callback_signature_failures_total{${ns},reason="mismatch"}`,
          values: counterEvery(180, 9, (m) => everyQuarter(m) && m >= 60),
        },
      ],
      alert_rule_test: [
        ...signatureAlerts('80m', []),
        // Every signed callback refused for 90 minutes, none verified since minute 45.
        ...signatureAlerts('150m', [warning]),
      ],
    },
    {
      interval: '1m',
      input_series: [
        {
          series: `sw_status_callback_signatures_verified_total{${ns}}`,
          values: counterEvery(180, 3, everyQuarter),
        },
        {
          // Someone posts a forged signature every 20 minutes.
          series: `sw_status_callback_signature_failures_total{${ns},reason="mismatch"}`,
          values: counterEvery(180, 1, (m) => m % 20 === 7),
        },
      ],
      alert_rule_test: [...signatureAlerts('90m', []), ...signatureAlerts('170m', [])],
    },
    {
      // Signed callbacks verify every 15 minutes for 3 hours, then none (the night); two
      // forged requests 2 hours into the quiet (found by review: a first version paged
      // critical for one).
      interval: '1m',
      input_series: [
        {
          series: `sw_status_callback_signatures_verified_total{${ns}}`,
          values: counterEvery(420, 3, (m) => everyQuarter(m) && m <= 180),
        },
        {
          series: `sw_status_callback_signature_failures_total{${ns},reason="mismatch"}`,
          values: counterEvery(420, 1, (m) => m === 300 || m === 310),
        },
      ],
      alert_rule_test: [...signatureAlerts('320m', []), ...signatureAlerts('350m', [])],
    },
  ]);
});

test('When pods are scraped with their instance and one is recreated under its name, then the orphan alerts go by the name’s latest values: a spool its successor replayed, or dead letters still on a scaled-down claim', async () => {
  // The ServiceMonitor's `instance` (the pod's IP): a recreated pod is a new series.
  const at = (pod: string, ip: string) => `${ns},pod="${pod}",instance="${ip}:8081"`;
  const orphaned = (eval_time: string, alertname: string, pods: string[], severity: string) => ({
    eval_time,
    alertname,
    exp_alerts: pods.map((pod) => ({ exp_labels: { severity, namespace: 'sw-status', pod } })),
  });
  await expectPromtoolTestPasses('orphans-by-name', [
    {
      interval: '1m',
      input_series: [
        // sw-status-3 spools through an outage and is evicted with its spool full (minute 10);
        // its successor (same claim, new IP) replays it all, then is scaled down empty.
        { series: `sw_status_spool_depth{${at('sw-status-3', '10.0.0.5')}}`, values: '50+5x10' },
        {
          series: `sw_status_spool_depth{${at('sw-status-3', '10.0.0.9')}}`,
          values: '_x12 100 40 0x46',
        },
        // sw-status-4 is scaled down with 100 spooled callbacks and never comes back.
        { series: `sw_status_spool_depth{${at('sw-status-4', '10.0.0.7')}}`, values: '50+5x10' },
        // sw-status-5 keeps 12 dead letters, its spool empty, and is scaled down at minute 30.
        { series: `sw_status_spool_depth{${at('sw-status-5', '10.0.0.8')}}`, values: '0x30' },
        {
          series: `sw_status_spool_dead_letters{${at('sw-status-5', '10.0.0.8')}}`,
          values: '12x30',
        },
      ],
      alert_rule_test: [
        orphaned('2h', 'SwStatusSpoolOrphaned', ['sw-status-4'], 'critical'),
        orphaned('20m', 'SwStatusSpoolDeadLettersOrphaned', [], 'warning'),
        orphaned('2h', 'SwStatusSpoolDeadLettersOrphaned', ['sw-status-5'], 'warning'),
      ],
    },
  ]);
});

test('When every pod is not ready, none is scraped, or none is there, then SwStatusDown fires after 5 minutes; a rollout’s one unready pod does not fire it', async () => {
  const job = 'job="sw-status-internal"';
  const down = (eval_time: string, labels: Record<string, string>) => ({
    eval_time,
    alertname: 'SwStatusDown',
    exp_alerts: [{ exp_labels: { severity: 'critical', ...labels } }],
  });
  const silent = (eval_time: string) => ({ eval_time, alertname: 'SwStatusDown', exp_alerts: [] });
  await expectPromtoolTestPasses('down', [
    {
      // Both pods scraped, both answering /readyz "not ready" from minute 10 (a schema this
      // release cannot use); one of them was unready for 3 minutes before, as in a rollout.
      interval: '1m',
      input_series: [
        { series: `up{${job},${ns},pod="sw-status-0"}`, values: '1x40' },
        { series: `up{${job},${ns},pod="sw-status-1"}`, values: '1x40' },
        { series: `sw_status_ready{${ns},pod="sw-status-0"}`, values: '1x9 0x30' },
        { series: `sw_status_ready{${ns},pod="sw-status-1"}`, values: '1x2 0x3 1x4 0x30' },
      ],
      alert_rule_test: [silent('9m'), silent('14m'), down('20m', { namespace: 'sw-status' })],
    },
    {
      // A crash loop: the targets are there, no scrape succeeds, sw_status_ready goes stale.
      interval: '1m',
      input_series: [
        { series: `up{${job},${ns},pod="sw-status-0"}`, values: '1x9 0x30' },
        { series: `up{${job},${ns},pod="sw-status-1"}`, values: '1x9 0x30' },
        { series: `sw_status_ready{${ns},pod="sw-status-0"}`, values: '1x9' },
        { series: `sw_status_ready{${ns},pod="sw-status-1"}`, values: '1x9' },
      ],
      alert_rule_test: [silent('9m'), down('25m', { namespace: 'sw-status' })],
    },
    {
      // No target at all (scaled to zero, or the StatefulSet gone) while another namespace's
      // deployment is scraped: the alert names the namespace.
      interval: '1m',
      input_series: [
        { series: `up{job="other"}`, values: '1x20' },
        { series: `up{${job},namespace="sw-status-staging",pod="sw-status-0"}`, values: '1x20' },
        {
          series: `sw_status_ready{namespace="sw-status-staging",pod="sw-status-0"}`,
          values: '1x20',
        },
      ],
      alert_rule_test: [down('10m', { job: 'sw-status-internal', namespace: 'sw-status' })],
    },
  ]);
});

test('When every pod’s relay and reconciliation gauges start unknown (NaN) after a rollout, then growing dead relays and stuck messages still fire', async () => {
  await expectPromtoolTestPasses('unknown-after-rollout', [
    {
      interval: '1m',
      input_series: [
        // Dead relays grow from 10 to 70 over the hour; both new pods report NaN at first.
        {
          series: `sw_status_relay_dead{${ns},pod="sw-status-0"}`,
          values: 'NaN NaN NaN 10+1x60',
        },
        {
          series: `sw_status_relay_dead{${ns},pod="sw-status-1"}`,
          values: 'NaN NaN NaN NaN 11+1x60',
        },
        {
          series: `sw_status_reconcile_stuck{${ns},pod="sw-status-0"}`,
          values: 'NaN NaN NaN 5+1x100',
        },
      ],
      alert_rule_test: [
        {
          eval_time: '25m',
          alertname: 'SwStatusDeadRelaysGrowing',
          exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
        },
        {
          eval_time: '50m',
          alertname: 'SwStatusStuckMessagesGrowing',
          exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
        },
      ],
    },
  ]);
});

/** An alert_rule_test: `alertname` is not firing at `eval_time`. */
const silentAt = (eval_time: string, alertname: string) => ({
  eval_time,
  alertname,
  exp_alerts: [],
});

/** An alert_rule_test: `alertname` fires at `eval_time`, critical, for the sw-status namespace. */
const criticalAt = (eval_time: string, alertname: string) => ({
  eval_time,
  alertname,
  exp_alerts: [{ exp_labels: { severity: 'critical', namespace: 'sw-status' } }],
});

/** The alert_rule_tests of a trouble that starts at minute 10: silent before, firing by 30. */
const startingAtMinute10 = (alertname: string) => [
  silentAt('9m', alertname),
  criticalAt('30m', alertname),
];

/** A promtool test group scraped every minute. */
const everyMinute = (input_series: unknown[], alert_rule_test: unknown[]) => ({
  interval: '1m',
  input_series,
  alert_rule_test,
});

test('When callbacks are refused by the public rate limit (429), then SwStatusCallbacksRateLimited fires; a few 429s among many callbacks do not, nor 429s to forged callbacks or to an anonymous client', async () => {
  const count = (code: string, pod: string, sender = 'authenticated') =>
    `sw_status_ingest_duration_seconds_count{${ns},pod="${pod}",api="cxml",code="${code}",sender="${sender}"}`;
  const limited = (limiter: string, pod: string, sender = 'authenticated') =>
    `sw_status_rate_limited_total{${ns},pod="${pod}",limiter="${limiter}",sender="${sender}"}`;
  await expectPromtoolTestPasses('rate-limited', [
    // One replica answers a tenth of SignalWire's callbacks 429 from minute 10 (a burst of
    // sends, or TRUST_PROXY not matching the hops: every callback keyed on one address).
    everyMinute(
      [
        { series: count('200', 'sw-status-0'), values: '0+600x40' },
        { series: count('429', 'sw-status-0'), values: '0x10 0+70x30' },
        { series: limited('public', 'sw-status-0'), values: '0x10 0+70x30' },
        { series: count('200', 'sw-status-1'), values: '0+600x40' },
      ],
      startingAtMinute10('SwStatusCallbacksRateLimited'),
    ),
    // One 429 a minute among 1 200 callbacks: not an alert.
    everyMinute(
      [
        { series: count('200', 'sw-status-0'), values: '0+1200x40' },
        { series: count('429', 'sw-status-0'), values: '0+1x40' },
        { series: limited('public', 'sw-status-0'), values: '0+1x40' },
      ],
      [silentAt('30m', 'SwStatusCallbacksRateLimited')],
    ),
    // A flood of forged callbacks from one address: 300 refused a minute, then 429s
    // (RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE) — nothing of SignalWire's was refused.
    everyMinute(
      [
        { series: count('200', 'sw-status-0'), values: '0+600x40' },
        { series: count('403', 'sw-status-0', 'unverified'), values: '0+300x40' },
        { series: count('429', 'sw-status-0', 'unverified'), values: '0+5000x40' },
        {
          series: limited('public_auth_failures', 'sw-status-0', 'unverified'),
          values: '0+5000x40',
        },
        { series: limited('public', 'sw-status-0'), values: '0x40' },
      ],
      [silentAt('30m', 'SwStatusCallbacksRateLimited')],
    ),
    // An anonymous client past RATE_LIMIT_PUBLIC_PER_MINUTE, on any path of the public
    // listener: 5 000 refused a minute, while SignalWire's callbacks all go through.
    everyMinute(
      [
        { series: count('200', 'sw-status-0'), values: '0+600x40' },
        { series: count('429', 'sw-status-0', 'unverified'), values: '0+2000x40' },
        { series: limited('public', 'sw-status-0', 'unverified'), values: '0+5000x40' },
        { series: limited('public', 'sw-status-0'), values: '0x40' },
      ],
      [silentAt('30m', 'SwStatusCallbacksRateLimited')],
    ),
  ]);
});

test('When SignalWire’s callbacks are answered 5xx, then SwStatusCallbackServerErrors fires however many requests an anonymous client has refused; an anonymous client’s own 503s do not fire it', async () => {
  // Callbacks answered, by `<sender> <code>`: the counter's increase each minute.
  const answered = (perSender: Record<string, string>) =>
    Object.entries(perSender).map(([key, values]) => {
      const [sender, code] = key.split(' ');
      return {
        series: `sw_status_ingest_duration_seconds_count{${ns},pod="sw-status-0",api="native",code="${code}",sender="${sender}"}`,
        values,
      };
    });
  await expectPromtoolTestPasses('callback-server-errors', [
    // The database and the spool fail from minute 10: SignalWire's callbacks all get 503,
    // while an anonymous client's unsigned requests are refused 401/429 a thousandfold.
    everyMinute(
      answered({
        'authenticated 200': '0+100x10 1000x30',
        'authenticated 503': '0x10 0+100x30',
        'unverified 401': '0+300x40',
        'unverified 429': '0+100000x40',
      }),
      startingAtMinute10('SwStatusCallbackServerErrors'),
    ),
    // An anonymous client holds the large-body budget: its own requests get 503 unread,
    // SignalWire's callbacks are all stored.
    everyMinute(answered({ 'authenticated 200': '0+100x40', 'unverified 503': '0+500x40' }), [
      silentAt('30m', 'SwStatusCallbackServerErrors'),
    ]),
  ]);
});

test('When SignalWire’s callbacks or the cluster’s clients get the service’s own 5xx, then SwStatusServerErrors fires; an anonymous client’s own 503s on the public listener, however many, do not', async () => {
  // Answered 5xx, by `<listener> <sender>`: the counter's increase each minute.
  const errors = (perSeries: Record<string, string>) =>
    Object.entries(perSeries).map(([key, values]) => {
      const [listener, sender] = key.split(' ');
      return {
        series: `sw_status_http_server_errors_total{${ns},pod="sw-status-0",listener="${listener}",sender="${sender}"}`,
        values,
      };
    });
  const warningAt = (eval_time: string, listener: string) => ({
    eval_time,
    alertname: 'SwStatusServerErrors',
    exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status', listener } }],
  });
  await expectPromtoolTestPasses('server-errors', [
    // An anonymous client holds the large-body budget for 40 minutes: 600 of its own requests
    // a minute are refused 503 unread. SignalWire's callbacks and the internal listener get none.
    everyMinute(
      errors({
        'public unverified': '0+600x40',
        'public authenticated': '0x40',
        'internal authenticated': '0x40',
      }),
      [silentAt('30m', 'SwStatusServerErrors')],
    ),
    // From minute 10, SignalWire's callbacks get 503 (the group commit's queue full), 10 a
    // minute, beside the same anonymous flood.
    everyMinute(
      errors({
        'public unverified': '0+600x40',
        'public authenticated': '0x10 0+10x30',
        'internal authenticated': '0x40',
      }),
      [silentAt('9m', 'SwStatusServerErrors'), warningAt('30m', 'public')],
    ),
    // From minute 10, the send proxy answers its own 502 (SignalWire unreachable).
    everyMinute(
      errors({
        'public unverified': '0x40',
        'public authenticated': '0x40',
        'internal authenticated': '0x10 0+10x30',
      }),
      [silentAt('9m', 'SwStatusServerErrors'), warningAt('30m', 'internal')],
    ),
  ]);
});

test('When a carrier without delivery receipts leaves a few SMS stuck every hour, then SwStatusStuckMessagesGrowing stays silent; when many go stuck, or callbacks stop, it fires', async () => {
  const finals = (pod: string) =>
    `sw_status_callbacks_total{${ns},pod="${pod}",api="cxml",status="delivered",outcome="recorded"}`;
  const stuck = (pod: string) => `sw_status_reconcile_stuck{${ns},pod="${pod}"}`;
  await expectPromtoolTestPasses('stuck-share', [
    {
      // 1 000 messages an hour delivered; 4 an hour (0.4 %) to a carrier that sends no receipt.
      interval: '1m',
      input_series: [
        { series: finals('sw-status-0'), values: '0+8x120' },
        { series: finals('sw-status-1'), values: '0+8.67x120' },
        { series: stuck('sw-status-0'), values: '100+0.0667x120' },
        { series: stuck('sw-status-1'), values: '100+0.0667x120' },
      ],
      alert_rule_test: [
        { eval_time: '100m', alertname: 'SwStatusStuckMessagesGrowing', exp_alerts: [] },
      ],
    },
    {
      // Callbacks stop reaching sw-status (an Ingress or DNS change): nothing is final by
      // callback, and every message ends stuck.
      interval: '1m',
      input_series: [
        { series: finals('sw-status-0'), values: '0+8x20 160x100' },
        { series: stuck('sw-status-0'), values: '100x20 100+1x100' },
      ],
      alert_rule_test: [
        {
          eval_time: '100m',
          alertname: 'SwStatusStuckMessagesGrowing',
          exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
        },
      ],
    },
    {
      // A carrier incident: a fifth of the messages end stuck while the rest are delivered.
      interval: '1m',
      input_series: [
        { series: finals('sw-status-0'), values: '0+8x120' },
        { series: stuck('sw-status-0'), values: '100x20 100+2x100' },
      ],
      alert_rule_test: [
        {
          eval_time: '100m',
          alertname: 'SwStatusStuckMessagesGrowing',
          exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
        },
      ],
    },
  ]);
});

test('When the read replica stays more than 30 s behind for 5 minutes, then SwStatusReadReplicaLagging fires; a lag of a few seconds, or a minute-long spike, does not', async () => {
  const lag = (namespace: string, pod: string) =>
    `sw_status_read_replica_lag_seconds{namespace="${namespace}",pod="${pod}"}`;
  await expectPromtoolTestPasses('read-replica-lagging', [
    {
      interval: '1m',
      input_series: [
        // Replay stops at minute 5 (paused, or a long recovery conflict): 60 s more each minute.
        { series: lag('behind', 'sw-status-0'), values: '0x5 60+60x25' },
        { series: lag('behind', 'sw-status-1'), values: '0x5 60+60x25' },
        // A healthy standby under load: a few seconds; another's one-minute spike.
        { series: lag('healthy', 'sw-status-0'), values: '2x30' },
        { series: lag('spike', 'sw-status-0'), values: '0x5 45 0x24' },
      ],
      alert_rule_test: [
        { eval_time: '8m', alertname: 'SwStatusReadReplicaLagging', exp_alerts: [] },
        {
          eval_time: '12m',
          alertname: 'SwStatusReadReplicaLagging',
          exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'behind' } }],
        },
      ],
    },
  ]);
});

test('When no pod reaches the database for 5 minutes, then SwStatusDatabaseUnreachable fires; one pod cut off, or a pod not yet probed (NaN), does not', async () => {
  const up = (pod: string) => `sw_status_database_up{${ns},pod="${pod}"}`;
  await expectPromtoolTestPasses('database-unreachable', [
    {
      interval: '1m',
      input_series: [
        { series: up('sw-status-0'), values: '1x10 0x20' },
        { series: up('sw-status-1'), values: 'NaN 1x9 0x20' },
        // A third pod loses its database for good at minute 2: alone, not an alert.
        { series: up('sw-status-2'), values: '1x2 0x28' },
      ],
      alert_rule_test: [
        { eval_time: '9m', alertname: 'SwStatusDatabaseUnreachable', exp_alerts: [] },
        { eval_time: '13m', alertname: 'SwStatusDatabaseUnreachable', exp_alerts: [] },
        {
          eval_time: '20m',
          alertname: 'SwStatusDatabaseUnreachable',
          exp_alerts: [{ exp_labels: { severity: 'critical', namespace: 'sw-status' } }],
        },
      ],
    },
  ]);
});

test('When the send proxy gets no answer or a 5xx from SignalWire for a tenth of its sends, then SwStatusProxySendsFailing fires; a few failures, apps’ sends refused 4xx, or a lone timeout in little traffic do not', async () => {
  const upstream = (pod: string, status: string) =>
    `sw_status_upstream_request_duration_seconds_count{${ns},pod="${pod}",api="cxml",status="${status}"}`;
  const failing = (eval_time: string) => ({
    eval_time,
    alertname: 'SwStatusProxySendsFailing',
    exp_alerts: [{ exp_labels: { severity: 'critical', namespace: 'sw-status' } }],
  });
  const silent = (eval_time: string) => ({
    eval_time,
    alertname: 'SwStatusProxySendsFailing',
    exp_alerts: [],
  });
  await expectPromtoolTestPasses('proxy-sends-failing', [
    {
      // Egress cut at minute 10 on both pods: every send unreachable from then on.
      interval: '1m',
      input_series: [
        { series: upstream('sw-status-0', '201'), values: '0+30x10 300x30' },
        { series: upstream('sw-status-0', 'unreachable'), values: '0x10 0+30x30' },
        { series: upstream('sw-status-1', '201'), values: '0+30x10 300x30' },
        { series: upstream('sw-status-1', 'unreachable'), values: '0x10 0+30x30' },
      ],
      alert_rule_test: [silent('9m'), silent('18m'), failing('30m')],
    },
    {
      // SignalWire answers a fifth of the sends 503, another a timeout.
      interval: '1m',
      input_series: [
        { series: upstream('sw-status-0', '201'), values: '0+40x40' },
        { series: upstream('sw-status-0', '503'), values: '0x10 0+8x30' },
        { series: upstream('sw-status-1', '201'), values: '0+40x40' },
        { series: upstream('sw-status-1', 'timeout'), values: '0x10 0+2x30' },
      ],
      alert_rule_test: [failing('35m')],
    },
    {
      // Healthy: 2 % answered 500 by SignalWire; an app sends half its requests with bad fields
      // (400), which SignalWire refuses.
      interval: '1m',
      input_series: [
        { series: upstream('sw-status-0', '201'), values: '0+50x60' },
        { series: upstream('sw-status-0', '500'), values: '0+1x60' },
        { series: upstream('sw-status-0', '400'), values: '0+50x60' },
      ],
      alert_rule_test: [silent('20m'), silent('30m'), silent('60m')],
    },
    {
      // A quiet deployment: a send every few minutes, and one of them timed out at minute 20.
      interval: '1m',
      input_series: [
        { series: upstream('sw-status-0', '201'), values: '0 0 1 1 1 1 2 2 2 2 3x50' },
        { series: upstream('sw-status-0', 'timeout'), values: '0x20 1x40' },
      ],
      alert_rule_test: [silent('22m'), silent('26m'), silent('31m'), silent('40m')],
    },
  ]);
});

/** promtool's values: `values` (space-separated samples) `times` times over. */
const repeated = (values: string, times: number): string =>
  Array.from({ length: times }, () => values).join(' ');

test('When the reconciliation sweep stops getting to due messages (credentials revoked), then SwStatusReconcileStalled fires; retries of minutes, or catching up on an old backlog, do not', async () => {
  const oldest = (pod: string) => `sw_status_reconcile_oldest_due_age_seconds{${ns},pod="${pod}"}`;
  const due = (pod: string) => `sw_status_reconcile_due{${ns},pod="${pod}"}`;
  const stalled = (eval_time: string) => ({
    eval_time,
    alertname: 'SwStatusReconcileStalled',
    exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
  });
  const silent = (eval_time: string) => ({
    eval_time,
    alertname: 'SwStatusReconcileStalled',
    exp_alerts: [],
  });
  await expectPromtoolTestPasses('reconcile-stalled', [
    {
      // The project's token revoked at SignalWire: its 40 due messages are postponed again and
      // again (the app cannot send with it either: the backlog stays), the oldest waits on. A
      // second pod started later reports NaN before its first look.
      interval: '1m',
      input_series: [
        { series: oldest('sw-status-0'), values: '0+60x180' },
        { series: due('sw-status-0'), values: '40x180' },
        { series: oldest('sw-status-1'), values: '_x30 NaN NaN 1920+60x150' },
        { series: due('sw-status-1'), values: '_x30 NaN NaN 40x150' },
        {
          series: `sw_status_reconcile_lookups_total{${ns},pod="sw-status-0",api="cxml",outcome="unauthorized"}`,
          values: '0+0.1x180',
        },
      ],
      alert_rule_test: [silent('60m'), silent('85m'), stalled('100m'), stalled('3h')],
    },
    {
      // Healthy, for 3 hours: due messages taken within minutes, a failed lookup retried after
      // 10 minutes (15 with a Retry-After); the backlog rises and falls with the traffic.
      interval: '1m',
      input_series: [
        { series: oldest('sw-status-0'), values: repeated('0 30 60 600 900 120 0 0 300 600', 18) },
        { series: due('sw-status-0'), values: repeated('3 5 8 12 2 0 0 4 6 1', 18) },
      ],
      alert_rule_test: [silent('1h'), silent('2h'), silent('3h')],
    },
    {
      // Credentials added for a project with messages from last week: the oldest due message
      // waited days, and the backlog shrinks as the sweep catches up at RECONCILE_RATE.
      interval: '1m',
      input_series: [
        { series: oldest('sw-status-0'), values: '600000x120' },
        { series: due('sw-status-0'), values: '20000-150x120' },
      ],
      alert_rule_test: [silent('60m'), silent('2h')],
    },
  ]);
});

test('When a relay to an app stays pending past its 2 h 36 min attempt, then SwStatusRelayBacklog fires, for a quiet app down too; relays of an app down for 40 minutes, delivered at that attempt, do not', async () => {
  const oldest = (pod: string) => `sw_status_relay_oldest_pending_age_seconds{${ns},pod="${pod}"}`;
  const attempts = (outcome: string) =>
    `sw_status_relay_attempts_total{${ns},pod="sw-status-0",outcome="${outcome}"}`;
  const backlog = (eval_time: string) => ({
    eval_time,
    alertname: 'SwStatusRelayBacklog',
    exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 'sw-status' } }],
  });
  const silent = (eval_time: string) => ({
    eval_time,
    alertname: 'SwStatusRelayBacklog',
    exp_alerts: [],
  });
  await expectPromtoolTestPasses('relay-backlog', [
    {
      // Every relay times out (egress not allowed) from minute 2; a new pod's NaN first.
      interval: '1m',
      input_series: [
        { series: oldest('sw-status-0'), values: '0 0 0+60x300' },
        { series: oldest('sw-status-1'), values: 'NaN NaN NaN 60+60x300' },
        // New relays keep arriving and failing their first attempts.
        { series: attempts('retry'), values: '0+5x302' },
      ],
      alert_rule_test: [silent('3h'), silent('3h25m'), backlog('3h40m'), backlog('5h')],
    },
    {
      // A quiet app down all along, one relay pending: attempted at 10 s, 1 m 10 s, 6 m 10 s,
      // 36 m 10 s, 2 h 36 m 10 s and 8 h 36 m 10 s, nothing in between for hours — it fires
      // throughout (a rule asking for failed attempts within the hour resolved it at 3 h 37 min).
      interval: '1m',
      input_series: [
        { series: oldest('sw-status-0'), values: '0+60x600' },
        { series: attempts('retry'), values: '_ 1 2 2 2 2 2 3x30 4x120 5x360 6x83' },
      ],
      alert_rule_test: [backlog('3h35m'), backlog('4h'), backlog('6h'), backlog('8h')],
    },
    {
      // An app down for 40 minutes: its oldest relay failed at 36 min, waits for the attempt at
      // 2 h 36 min, and the backlog goes out then.
      interval: '1m',
      input_series: [{ series: oldest('sw-status-0'), values: 'NaN 0+60x156 0x60' }],
      alert_rule_test: [silent('2h'), silent('2h36m'), silent('3h'), silent('3h30m')],
    },
  ]);
});
