import { writeFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';

/**
 * The Grafana dashboard of k8s/components/monitoring, generated so that its 20-odd panels stay
 * consistent (one data source variable, one namespace filter, the same rate interval, a fixed
 * uid). `npm run generate:dashboard` rewrites grafana-dashboard.yaml; a test checks that the
 * committed file is what this script makes, and that every series a panel reads is one
 * /metrics really serves (test/ops/monitoring-series.test.ts).
 */

export const DASHBOARD_UID = 'sw-status-ops';
export const DASHBOARD_FILE = path.join(
  __dirname,
  '..',
  'k8s',
  'components',
  'monitoring',
  'grafana-dashboard.yaml',
);

/** Every series selector has the namespace filter (the dashboard's namespace variable). */
const NS = 'namespace="$namespace"';
/**
 * The series the namespace variable lists namespaces from: one every replica serves from its
 * start (src/metrics/metrics.ts), not a labelled counter such as callbacks_total, which has
 * no sample until the first callback — when the variable would be empty and every panel blank,
 * on a new install or an Ingress that does not route SignalWire's callbacks.
 */
const NAMESPACE_SOURCE = 'sw_status_ready';
const RATE = '$__rate_interval';

interface Target {
  expr: string;
  legend: string;
  /**
   * For a series of another unit than its panel's (an age beside rates): its own unit, drawn
   * on the right axis — on the panel's axis an age of 3 h read "10.8K req/s" and flattened the
   * rates beside it to zero.
   */
  rightAxisUnit?: string;
}

interface PanelSpec {
  title: string;
  description: string;
  unit: string;
  targets: Target[];
  /** Grid width (24 = full row). */
  width?: number;
}

interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

const q = (quantile: number, metric: string, by: string, filter = ''): string =>
  `histogram_quantile(${quantile}, sum by (le${by ? `, ${by}` : ''}) (rate(${metric}_bucket{${NS}${filter}}[${RATE}])))`;

export const ROWS: RowSpec[] = [
  {
    title: 'Callbacks (public listener)',
    panels: [
      {
        title: 'Callback rate by outcome',
        description:
          'Callbacks received per second: recorded (new), duplicate (SignalWire retried), refused_<reason> (answered 4xx/5xx).',
        unit: 'reqps',
        targets: [
          {
            expr: `sum by (outcome) (rate(sw_status_callbacks_total{${NS}}[${RATE}]))`,
            legend: '{{outcome}}',
          },
        ],
      },
      {
        title: 'Recorded callbacks by status',
        description: 'New events per second by API flavour and canonical status.',
        unit: 'reqps',
        targets: [
          {
            expr: `sum by (api, status) (rate(sw_status_callbacks_total{${NS}, outcome="recorded"}[${RATE}]))`,
            legend: '{{api}} {{status}}',
          },
        ],
      },
      {
        title: 'Signature failures',
        description:
          'Callbacks whose X-SignalWire-Signature did not verify. A jump right after a key rotation: SIGNALWIRE_SIGNING_KEYS lacks the new key (or PUBLIC_BASE_URL changed).',
        unit: 'reqps',
        targets: [
          {
            expr: `sum by (reason) (rate(sw_status_callback_signature_failures_total{${NS}}[${RATE}]))`,
            legend: '{{reason}}',
          },
        ],
      },
      {
        title: 'Ingest latency (received → durable 200)',
        description:
          'Callback answer time for code 200, which is sent only once the event is committed (or spooled). SignalWire gives up after about 5 s.',
        unit: 's',
        targets: [
          { expr: q(0.5, 'sw_status_ingest_duration_seconds', '', ', code="200"'), legend: 'p50' },
          { expr: q(0.99, 'sw_status_ingest_duration_seconds', '', ', code="200"'), legend: 'p99' },
        ],
      },
      {
        title: 'Server errors (5xx) and refused callbacks',
        description:
          'Answers with a 5xx of the service itself, by listener and sender, and callbacks refused with 5xx or 429 (the public rate limit, per client address and replica), by sender: SignalWire tries a callback only three times. authenticated: SignalWire (token or signature verified, or its address lately) and, on the internal listener, the cluster; unverified: anyone else on the public listener (e.g. 503s to a client holding the large-body budget), which pages no one.',
        unit: 'reqps',
        targets: [
          {
            // Split by sender as SwStatusServerErrors reads it (sender="authenticated"), so an
            // anonymous client's own 503s are not read as the service failing SignalWire.
            expr: `sum by (listener, sender) (rate(sw_status_http_server_errors_total{${NS}}[${RATE}]))`,
            legend: '{{listener}} 5xx ({{sender}})',
          },
          {
            expr: `sum by (sender) (rate(sw_status_ingest_duration_seconds_count{${NS}, code=~"5.."}[${RATE}]))`,
            legend: 'callbacks answered 5xx ({{sender}})',
          },
          {
            // Refused before the route, so in neither callbacks_total nor the 5xx: a 429 is a
            // callback SignalWire retries only three times, like a 5xx.
            expr: `sum by (sender) (rate(sw_status_rate_limited_total{${NS}, limiter="public"}[${RATE}]))`,
            legend: 'callbacks answered 429 (RATE_LIMIT_PUBLIC_PER_MINUTE, {{sender}})',
          },
          {
            // An address past RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE: forged callbacks,
            // apart from the line above so a flood of them is not read as SignalWire's refused.
            expr: `sum(rate(sw_status_rate_limited_total{${NS}, limiter="public_auth_failures"}[${RATE}]))`,
            legend: 'answered 429 after too many refused authentications (forged callbacks)',
          },
        ],
      },
      {
        title: 'Ready pods',
        description:
          'Pods whose last /readyz said ready, pods that reach the database (a pod stays ready through a database outage: its spool takes the callbacks), and readiness changes (flapping) in the interval.',
        unit: 'short',
        targets: [
          { expr: `sum(sw_status_ready{${NS}})`, legend: 'ready pods' },
          // `>= 0` leaves out a pod not yet probed (NaN), which would make the sum NaN.
          { expr: `sum(sw_status_database_up{${NS}} >= 0)`, legend: 'pods reaching the database' },
          {
            expr: `sum(increase(sw_status_readiness_changes_total{${NS}}[${RATE}]))`,
            legend: 'readiness changes',
          },
        ],
      },
    ],
  },
  {
    title: 'Durability: spool, feed, database',
    panels: [
      {
        title: 'Spool depth',
        description:
          'Callbacks acknowledged to SignalWire while PostgreSQL was unreachable, waiting on each pod’s volume to be replayed. Should drain to 0.',
        unit: 'short',
        targets: [
          { expr: `sum by (pod) (sw_status_spool_depth{${NS}})`, legend: '{{pod}}' },
          {
            expr: `sum(sw_status_spool_dead_letters{${NS}})`,
            legend: 'dead letters (need an operator)',
          },
        ],
      },
      {
        title: 'Change feed lag',
        description:
          'Age of the oldest open writing transaction: the change feed cannot pass it. Listener up (right axis, 1 or 0) = commit hints from other replicas arrive. Read replica behind (with DATABASE_READ_URL only): how old the data lists, stats and the feed serve is; past 60 s their reads are refused.',
        unit: 's',
        targets: [
          { expr: `max(sw_status_feed_lag_seconds{${NS}})`, legend: 'lag' },
          {
            expr: `min(sw_status_feed_listener_up{${NS}})`,
            legend: 'listener up (min)',
            rightAxisUnit: 'none',
          },
          {
            expr: `max(sw_status_read_replica_lag_seconds{${NS}})`,
            legend: 'read replica behind',
          },
        ],
      },
      {
        title: 'Database pool use',
        description:
          'Connections open and idle per pod, and queries waiting for a connection (should be 0). Query API reads waiting their turn in the process (a quarter of the pool runs at once) climb when dashboards ask more than that can answer; past 5 s they are answered 503.',
        unit: 'short',
        targets: [
          { expr: `sum by (pod) (sw_status_db_pool_clients{${NS}})`, legend: '{{pod}} open' },
          { expr: `sum by (pod) (sw_status_db_pool_idle_clients{${NS}})`, legend: '{{pod}} idle' },
          {
            expr: `sum by (pod) (sw_status_db_pool_waiting_requests{${NS}})`,
            legend: '{{pod}} waiting',
          },
          {
            expr: `sum by (pod) (sw_status_query_reads_waiting{${NS}})`,
            legend: '{{pod}} query reads waiting',
          },
        ],
      },
    ],
  },
  {
    title: 'Relay and reconciliation',
    panels: [
      {
        title: 'Relay backlog and dead letters',
        description:
          'Relays to the apps’ own status callbacks: pending, dead (retries exhausted, or their schedule ran out while their host kept failing; retry with POST /v1/relays/{id}/retry) and the oldest pending age. Counts are of the whole database (every pod reports the same: max).',
        unit: 'short',
        targets: [
          { expr: `max(sw_status_relay_pending{${NS}})`, legend: 'pending' },
          { expr: `max(sw_status_relay_dead{${NS}})`, legend: 'dead' },
        ],
      },
      {
        title: 'Relay attempts and oldest pending',
        description:
          'Relay attempts per second by outcome, and relays made dead without an attempt (expired: their schedule ran out while their host kept failing); oldest pending relay (right axis).',
        unit: 'reqps',
        targets: [
          {
            expr: `sum by (outcome) (rate(sw_status_relay_attempts_total{${NS}}[${RATE}]))`,
            legend: '{{outcome}}',
          },
          {
            expr: `sum(rate(sw_status_relay_expired_total{${NS}}[${RATE}]))`,
            legend: 'expired',
          },
          {
            expr: `max(sw_status_relay_oldest_pending_age_seconds{${NS}})`,
            legend: 'oldest pending',
            rightAxisUnit: 's',
          },
        ],
      },
      {
        title: 'Stuck messages and sweep backlog',
        description:
          'Messages still not final after the last reconciliation lookup (stuck), and messages due for a lookup.',
        unit: 'short',
        targets: [
          { expr: `max(sw_status_reconcile_stuck{${NS}})`, legend: 'stuck' },
          { expr: `max(sw_status_reconcile_due{${NS}})`, legend: 'due' },
        ],
      },
      {
        title: 'Reconciliation lookups',
        description: 'Lookups at SignalWire per second by outcome.',
        unit: 'reqps',
        targets: [
          {
            expr: `sum by (outcome) (rate(sw_status_reconcile_lookups_total{${NS}}[${RATE}]))`,
            legend: '{{outcome}}',
          },
        ],
      },
    ],
  },
  {
    title: 'Send proxy (upstream SignalWire)',
    panels: [
      {
        title: 'Upstream latency',
        description: 'Send-proxy calls to SignalWire’s API, by API flavour.',
        unit: 's',
        targets: [
          {
            expr: q(0.5, 'sw_status_upstream_request_duration_seconds', 'api'),
            legend: '{{api}} p50',
          },
          {
            expr: q(0.95, 'sw_status_upstream_request_duration_seconds', 'api'),
            legend: '{{api}} p95',
          },
        ],
      },
      {
        title: 'Upstream answers',
        description:
          'Send-proxy calls per second by upstream status (or timeout/unreachable), and sends SignalWire accepted that could not be recorded.',
        unit: 'reqps',
        targets: [
          {
            expr: `sum by (status) (rate(sw_status_upstream_request_duration_seconds_count{${NS}}[${RATE}]))`,
            legend: '{{status}}',
          },
          {
            expr: `sum(rate(sw_status_proxy_unrecorded_sends_total{${NS}}[${RATE}]))`,
            legend: 'unrecorded sends',
          },
        ],
      },
    ],
  },
];

/** The dashboard model (Grafana JSON, schemaVersion 39). */
/** A panel's queries are A, B, C…: overrides name a series by its query's letter. */
const refId = (index: number): string => String.fromCharCode(65 + index);

export function dashboard(): Record<string, unknown> {
  const panels: unknown[] = [];
  let id = 1;
  let y = 0;
  for (const row of ROWS) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
    });
    y += 1;
    let x = 0;
    for (const panel of row.panels) {
      const w = panel.width ?? 8;
      if (x + w > 24) {
        x = 0;
        y += 8;
      }
      panels.push({
        id: id++,
        type: 'timeseries',
        title: panel.title,
        description: panel.description,
        datasource: { type: 'prometheus', uid: '${datasource}' },
        gridPos: { h: 8, w, x, y },
        fieldConfig: {
          defaults: { unit: panel.unit, min: 0 },
          overrides: panel.targets.flatMap((target, index) =>
            target.rightAxisUnit === undefined
              ? []
              : [
                  {
                    matcher: { id: 'byFrameRefID', options: refId(index) },
                    properties: [
                      { id: 'unit', value: target.rightAxisUnit },
                      { id: 'custom.axisPlacement', value: 'right' },
                    ],
                  },
                ],
          ),
        },
        options: {
          legend: { displayMode: 'list', placement: 'bottom' },
          tooltip: { mode: 'multi' },
        },
        targets: panel.targets.map((target, index) => ({
          refId: refId(index),
          datasource: { type: 'prometheus', uid: '${datasource}' },
          expr: target.expr,
          legendFormat: target.legend,
        })),
      });
      x += w;
    }
    y += 8;
  }
  return {
    uid: DASHBOARD_UID,
    title: 'sw-status',
    description:
      'SignalWire delivery-status service: callbacks, durability, relay, reconciliation, send proxy.',
    tags: ['sw-status', 'signalwire'],
    timezone: 'utc',
    schemaVersion: 39,
    version: 1,
    editable: true,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: {},
        },
        {
          name: 'namespace',
          label: 'Namespace',
          type: 'query',
          datasource: { type: 'prometheus', uid: '${datasource}' },
          query: {
            query: `label_values(${NAMESPACE_SOURCE}, namespace)`,
            refId: 'namespaces',
          },
          definition: `label_values(${NAMESPACE_SOURCE}, namespace)`,
          refresh: 2,
          current: {},
        },
      ],
    },
    panels,
  };
}

/** Every PromQL expression of the dashboard (panels and variables). */
export function dashboardExpressions(): string[] {
  return [
    ...ROWS.flatMap((row) => row.panels.flatMap((panel) => panel.targets.map((t) => t.expr))),
    NAMESPACE_SOURCE,
  ];
}

/** The ConfigMap as committed: YAML, formatted as `npm run format` would. */
export async function dashboardConfigMapYaml(): Promise<string> {
  const header = [
    '# GENERATED by `npm run generate:dashboard` (scripts/grafana-dashboard.ts): edit the script.',
    '# The Grafana dashboard of sw-status. Grafana’s dashboard sidecar (kube-prometheus-stack,',
    '# grafana/grafana’s sidecar.dashboards) loads ConfigMaps labelled grafana_dashboard: "1";',
    '# let it search this namespace (sidecar.dashboards.searchNamespace).',
    '',
  ].join('\n');
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'sw-status-dashboard',
      labels: { 'app.kubernetes.io/name': 'sw-status', grafana_dashboard: '1' },
    },
    data: { 'sw-status.json': `${JSON.stringify(dashboard(), null, 2)}\n` },
  };
  // Imported here: prettier loads its plugins with import(), which jest's CommonJS cannot.
  const { default: prettier } = await import('prettier');
  const options = await prettier.resolveConfig(DASHBOARD_FILE);
  return prettier.format(header + yaml.dump(configMap, { lineWidth: -1 }), {
    ...options,
    parser: 'yaml',
  });
}

// `--stdout` prints instead of writing (the test compares it with the committed file).
if (require.main === module) {
  void dashboardConfigMapYaml().then((text) => {
    if (process.argv.includes('--stdout')) {
      process.stdout.write(text);
      return;
    }
    writeFileSync(DASHBOARD_FILE, text);
    console.log(`wrote ${DASHBOARD_FILE}`);
  });
}
