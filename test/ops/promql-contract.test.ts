import { readObjects } from '../deploy/kustomize';
import { dashboardExpressions } from '../../scripts/grafana-dashboard';
import { alertRuleGroups } from './alert-rules';
import { labelUses, metricNames, unservedLabelUses } from './promql-names';
import path from 'node:path';
import { K8S_DIR } from '../deploy/kustomize';

/**
 * What the panels and alert rules of k8s/components/monitoring ask of PromQL, read without a
 * running service (monitoring-series.test.ts checks the names and labels against a real scrape):
 * histograms are read by bucket bound, and rate windows hold enough scrapes.
 */

const ruleExpressions = (): string[] =>
  alertRuleGroups().flatMap((group) => group.rules.map((rule) => rule.expr));

test('When an expression is read for labels, then matchers and by() groupings are tied to their metrics, target labels left out', () => {
  const uses = labelUses(
    'histogram_quantile(0.5, sum by (le, api) (rate(a_bucket{namespace="$ns", code="200", x=~"5.."}[5m]))) / sum by (namespace) (b)',
  );
  expect(uses).toEqual(
    expect.arrayContaining([
      { metric: 'a_bucket', label: 'code', equals: '200' },
      { metric: 'a_bucket', label: 'x', equals: undefined },
      { metric: 'a_bucket', label: 'le' },
      { metric: 'a_bucket', label: 'api' },
    ]),
  );
  expect(uses.some((use) => use.label === 'namespace' || use.metric === 'b')).toBe(false);
  const exposition = 'a_bucket{le="1",api="native",code="200",x="503"} 1\n';
  expect(unservedLabelUses(uses, exposition)).toEqual([]);
  expect(
    unservedLabelUses(labelUses('sum by (outcome) (a_bucket{code="201"})'), exposition),
  ).toEqual(['a_bucket{code="201"}', 'a_bucket{outcome}']);
});

test('When a panel or rule reads a histogram’s buckets, then it keeps `le` and takes a quantile', () => {
  const expressions = [...dashboardExpressions(), ...ruleExpressions()];
  const bucketReaders = expressions.filter((expr) =>
    metricNames(expr).some((name) => name.endsWith('_bucket')),
  );
  expect(bucketReaders.length).toBeGreaterThan(0);
  for (const expr of bucketReaders) {
    expect(expr).toMatch(/histogram_quantile\(/);
    expect(expr).toMatch(/\bby \((le\b|[^)]*\ble\b)/);
  }
});

test('When an alert rule takes a rate or a window, then the window holds at least four of the ServiceMonitor’s scrapes', () => {
  const seconds = (d: string): number => {
    const m = /^(\d+)(s|m|h|d)$/.exec(d);
    if (!m) throw new Error(`unexpected duration ${d}`);
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  };
  const [monitor] = readObjects(
    path.join(K8S_DIR, 'components', 'monitoring', 'servicemonitor.yaml'),
  ) as unknown as Array<{ spec: { endpoints: Array<{ interval: string }> } }>;
  const scrape = seconds(monitor!.spec.endpoints[0]!.interval);
  const windows = ruleExpressions().flatMap((expr) =>
    [...expr.matchAll(/\[(\d+[smhd])(?::\d+[smhd])?\]/g)].map((m) => m[1]!),
  );
  expect(windows.length).toBeGreaterThan(5);
  for (const window of windows) expect(seconds(window)).toBeGreaterThanOrEqual(4 * scrape);
});
