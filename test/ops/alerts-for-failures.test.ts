import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROMTOOL, alertRules, runPromtoolTest } from './alert-rules';

/**
 * Failures that matter to an operator, shown as the series /metrics really serves during them,
 * evaluated by promtool over k8s/components/monitoring/prometheusrule.yaml: each scenario must
 * fire its alert (prometheus-rules.test.ts checks each rule's own thresholds, firing and not).
 *
 * How: promtool test rules with `exp_alerts: []` for every alert; promtool then lists each alert
 * that did fire (`alertname: X` in a FAILED block). The control scenario (healthy service)
 * proves the harness: nothing fires there.
 */

const ns = 'namespace="sw-status"';
const pod0 = `${ns},pod="sw-status-0",job="sw-status-internal"`;

let work: string;
beforeAll(() => {
  if (!existsSync(PROMTOOL)) throw new Error(`promtool not found at ${PROMTOOL}`);
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-alerts-for-failures-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Series {
  series: string;
  values: string;
}

/** A healthy single-pod service for `minutes` minutes: scraped, ready, database up, callbacks flowing. */
function healthy(minutes: number): Series[] {
  return [
    { series: `up{${pod0}}`, values: `1x${minutes}` },
    { series: `sw_status_ready{${pod0}}`, values: `1x${minutes}` },
    { series: `sw_status_database_up{${pod0}}`, values: `1x${minutes}` },
    { series: `sw_status_spool_depth{${pod0}}`, values: `0x${minutes}` },
    { series: `sw_status_spool_dead_letters{${pod0}}`, values: `0x${minutes}` },
    {
      series: `sw_status_ingest_duration_seconds_count{${pod0},api="cxml",code="200",sender="authenticated"}`,
      values: `0+100x${minutes}`,
    },
    {
      series: `sw_status_callbacks_total{${pod0},api="cxml",status="delivered",outcome="recorded"}`,
      values: `0+100x${minutes}`,
    },
    {
      series: `sw_status_http_server_errors_total{${pod0},listener="public",sender="authenticated"}`,
      values: `0x${minutes}`,
    },
    {
      series: `sw_status_http_server_errors_total{${pod0},listener="public",sender="unverified"}`,
      values: `0x${minutes}`,
    },
    {
      series: `sw_status_http_server_errors_total{${pod0},listener="internal",sender="authenticated"}`,
      values: `0x${minutes}`,
    },
    { series: `sw_status_relay_dead{${pod0}}`, values: `0x${minutes}` },
    { series: `sw_status_reconcile_stuck{${pod0}}`, values: `5x${minutes}` },
    { series: `sw_status_clock_offset_seconds{${pod0}}`, values: `0.001x${minutes}` },
    { series: `sw_status_feed_lag_seconds{${pod0}}`, values: `0x${minutes}` },
  ];
}

/** The names of the alerts firing at `evalTime` over these series. */
async function firingAlerts(name: string, series: Series[], evalTime: string): Promise<string[]> {
  const { ok, output: out } = await runPromtoolTest(work, name, [
    {
      interval: '1m',
      input_series: series,
      alert_rule_test: alertRules().map((rule) => ({
        eval_time: evalTime,
        alertname: rule.alert,
        exp_alerts: [],
      })),
    },
  ]);
  if (ok) {
    expect(out).toContain('SUCCESS');
    return [];
  }
  const names = [...out.matchAll(/alertname: (\w+), time:/g)].map((m) => m[1]!);
  // A failure that is not an alert firing (a parse error) must not pass for one.
  expect(names.length).toBeGreaterThan(0);
  return [...new Set(names)];
}

test('Control: a healthy service fires nothing (the harness sees no false alert)', async () => {
  expect(await firingAlerts('control', healthy(360), '6h')).toEqual([]);
});

test('Control: the harness does see an alert fire (database unreachable for an hour)', async () => {
  const series = healthy(60).map((s) =>
    s.series.startsWith('sw_status_database_up') ? { ...s, values: '0x60' } : s,
  );
  expect(await firingAlerts('control-fires', series, '60m')).toEqual([
    'SwStatusDatabaseUnreachable',
  ]);
});

test('When the send proxy cannot reach SignalWire for an hour (every send 502), then an alert fires', async () => {
  // Egress NetworkPolicy / DNS / SignalWire outage / a wrong SIGNALWIRE_SPACE_URL: every app's
  // send through the proxy fails. The proxy answers 502 itself (src/proxy/proxy-http.ts fail()),
  // counted as the service's own 5xx (test/proxy/proxy-5xx-counted.test.ts).
  const series = [
    ...healthy(60).map((s) =>
      s.series.includes('listener="internal"') ? { ...s, values: '0+60x60' } : s,
    ),
    {
      series: `sw_status_upstream_request_duration_seconds_count{${pod0},api="cxml",status="unreachable"}`,
      values: '0+60x60',
    },
    {
      series: `sw_status_upstream_request_duration_seconds_count{${pod0},api="cxml",status="201"}`,
      values: '500x60',
    },
  ];
  expect(await firingAlerts('proxy-down', series, '60m')).toEqual(
    expect.arrayContaining(['SwStatusProxySendsFailing', 'SwStatusServerErrors']),
  );
});

test('When SignalWire revokes the sweep’s credentials for 6 hours, then an alert fires', async () => {
  // src/reconcile/reconcile-worker.ts credentialsRefused(): a 401 pauses the project's lookups
  // and postpones the message at its step, so no message ever advances to `stuck` (the other
  // reconciliation alert, SwStatusStuckMessagesGrowing, never sees it). What /metrics shows:
  // the due backlog and its oldest age grow for ever, and 401 lookups are counted.
  const series = [
    ...healthy(360),
    { series: `sw_status_reconcile_due{${pod0}}`, values: '20+10x360' },
    { series: `sw_status_reconcile_oldest_due_age_seconds{${pod0}}`, values: '0+60x360' },
    {
      series: `sw_status_reconcile_lookups_total{${pod0},api="cxml",outcome="unauthorized"}`,
      values: '0+0.2x360',
    },
    {
      series: `sw_status_reconcile_lookups_total{${pod0},api="cxml",outcome="unchanged"}`,
      values: '300x360',
    },
  ];
  expect(await firingAlerts('sweep-stalled', series, '6h')).toEqual(['SwStatusReconcileStalled']);
});

test('When every relay to the apps times out for 6 hours (backlog and oldest age growing), then an alert fires', async () => {
  // E.g. RELAY_ALLOWED_NETWORKS opened for an in-cluster app but networkpolicy.yaml egress not
  // (its own comment: "its relays time out and end dead"). Jobs retry on
  // RELAY_RETRY_SCHEDULE (about 20.6 h in all) before they are dead, the only thing
  // SwStatusDeadRelaysGrowing sees: apps would get no status callbacks for most of a day.
  const series = [
    ...healthy(360),
    { series: `sw_status_relay_pending{${pod0}}`, values: '0+5x360' },
    { series: `sw_status_relay_oldest_pending_age_seconds{${pod0}}`, values: '0+60x360' },
    { series: `sw_status_relay_attempts_total{${pod0},outcome="retry"}`, values: '0+20x360' },
    { series: `sw_status_relay_attempts_total{${pod0},outcome="delivered"}`, values: '1000x360' },
    { series: `sw_status_relay_open_circuits{${pod0}}`, values: '1x360' },
  ];
  expect(await firingAlerts('relay-stalled', series, '6h')).toEqual(['SwStatusRelayBacklog']);
});
