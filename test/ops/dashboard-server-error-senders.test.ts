import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { DASHBOARD_FILE } from '../../scripts/grafana-dashboard';
import { alertRules } from './alert-rules';

/**
 * The 5xx alerts read SignalWire's traffic only (sender="authenticated"): anyone can reach the
 * public listener, and an anonymous client's own 503s (a large body refused while it holds the
 * body budget) page no one. The dashboard an operator opens beside such an alert must keep the
 * senders apart too, or it shows those 503s mixed with the failures the alert is about.
 */

interface Target {
  expr: string;
  legendFormat: string;
}

/** The committed dashboard's panel targets: what Grafana loads. */
function dashboardTargets(): Target[] {
  const configMap = yaml.load(readFileSync(DASHBOARD_FILE, 'utf8')) as {
    data: Record<string, string>;
  };
  const board = JSON.parse(configMap.data['sw-status.json']!) as {
    panels: Array<{ targets?: Target[] }>;
  };
  return board.panels.flatMap((panel) => panel.targets ?? []);
}

/** The 5xx series the dashboard shows and an alert reads for SignalWire's traffic only. */
const FIVE_XX_SERIES = [
  /sw_status_http_server_errors_total\b/,
  /sw_status_ingest_duration_seconds_count\{[^}]*code=~"5\.\."/,
];

test('When an alert reads only sender="authenticated" 5xx, then the dashboard’s 5xx series are split by sender, with the sender in their legend', () => {
  const senderAlerts = alertRules().filter(
    (rule) =>
      rule.expr.includes('sender="authenticated"') &&
      FIVE_XX_SERIES.some((series) => series.test(rule.expr)),
  );
  expect(senderAlerts.map((rule) => rule.alert).sort()).toEqual([
    'SwStatusCallbackServerErrors',
    'SwStatusServerErrors',
  ]);
  const fiveXx = dashboardTargets().filter((target) =>
    FIVE_XX_SERIES.some((series) => series.test(target.expr)),
  );
  expect(fiveXx).toHaveLength(FIVE_XX_SERIES.length);
  for (const target of fiveXx) {
    expect(target.expr).toMatch(/\bsum by \([^)]*\bsender\b[^)]*\)/);
    expect(target.legendFormat).toContain('{{sender}}');
  }
});
