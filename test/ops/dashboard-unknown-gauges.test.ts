import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { dashboardExpressions } from '../../scripts/grafana-dashboard';

/**
 * Some gauges start unknown (NaN) on a new pod: the database's reachability until its first
 * /readyz, the relay's and the sweep's database-wide counts until their first look
 * (test/ops/unknown-gauges.test.ts). A dashboard panel that adds pods' values up turns one
 * such pod into NaN for the whole namespace — a gap in the graph at every pod start. Every
 * panel reading such a gauge is evaluated by promtool with one pod unknown and one known: the
 * answer must be a number.
 */

const run = promisify(execFile);
const PROMTOOL = process.env.PROMTOOL_PATH ?? '/usr/bin/promtool';

/** The gauges served as NaN until their first reading, with a value each known pod reports. */
const UNKNOWN_AT_START: Record<string, number> = {
  sw_status_database_up: 1,
  sw_status_relay_pending: 3,
  sw_status_relay_dead: 2,
  sw_status_relay_oldest_pending_age_seconds: 12,
  sw_status_reconcile_due: 5,
  sw_status_reconcile_stuck: 1,
};

let work: string;
beforeAll(() => {
  if (!existsSync(PROMTOOL)) {
    throw new Error(`promtool not found at ${PROMTOOL}: \`apt-get install -y prometheus\``);
  }
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-dashboard-nan-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const panelsReading = (metric: string): string[] =>
  dashboardExpressions().filter((expr) => new RegExp(`\\b${metric}\\b`).test(expr));

test.each(Object.keys(UNKNOWN_AT_START))(
  'When a new pod still reports %s as unknown (NaN) beside a pod that knows it, then every panel reading it shows a number',
  async (metric) => {
    const known = UNKNOWN_AT_START[metric]!;
    const exprs = panelsReading(metric);
    expect(exprs.length).toBeGreaterThan(0);
    for (const [i, panel] of exprs.entries()) {
      const expr = panel.replaceAll('$namespace', 'sw-status').replaceAll('$__rate_interval', '5m');
      const file = path.join(work, `${metric}-${i}.test.yaml`);
      const rules = path.join(work, 'empty.rules.yaml');
      writeFileSync(rules, yaml.dump({ groups: [] }));
      writeFileSync(
        file,
        yaml.dump({
          rule_files: [rules],
          evaluation_interval: '1m',
          tests: [
            {
              interval: '1m',
              input_series: [
                {
                  series: `${metric}{namespace="sw-status",pod="sw-status-0"}`,
                  values: `${known}x5`,
                },
                {
                  series: `${metric}{namespace="sw-status",pod="sw-status-1"}`,
                  values: 'NaN NaN NaN NaN NaN NaN',
                },
              ],
              // The known pod's reading: adding up or taking the maximum over the pods that
              // know it gives the same here.
              promql_expr_test: [
                { expr, eval_time: '2m', exp_samples: [{ labels: '{}', value: known }] },
              ],
            },
          ],
        }),
      );
      const result = await run(PROMTOOL, ['test', 'rules', file]).catch(
        (error: { stdout: string; stderr: string }) => error,
      );
      expect({ expr, output: `${result.stdout}${result.stderr}` }).toEqual({
        expr,
        output: expect.stringContaining('SUCCESS'),
      });
    }
  },
);
