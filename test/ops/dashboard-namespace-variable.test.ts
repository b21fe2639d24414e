import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { DASHBOARD_FILE } from '../../scripts/grafana-dashboard';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { scrape } from './scrape';

/**
 * Every panel of the Grafana dashboard filters on `namespace="$namespace"`, and the variable's
 * values come from one metric (label_values(<metric>, namespace)). A replica that has not yet
 * received a callback — a new install, a staging cluster, an Ingress that does not route
 * SignalWire's callbacks, i.e. exactly when someone opens the dashboard to find out why —
 * already serves a sample of that metric, so the variable is never empty and no panel blank.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** The metric the committed dashboard's namespace variable lists namespaces from. */
function namespaceVariableMetric(): string | undefined {
  const configMap = yaml.load(readFileSync(DASHBOARD_FILE, 'utf8')) as {
    data: Record<string, string>;
  };
  const board = JSON.parse(Object.values(configMap.data)[0]!) as {
    templating: { list: Array<{ name: string; definition?: string }> };
  };
  const variable = board.templating.list.find((v) => v.name === 'namespace');
  return /label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(variable?.definition ?? '')?.[1];
}

test('When no callback has arrived yet, then /metrics already serves a sample of the metric the dashboard’s namespace variable lists', async () => {
  const metric = namespaceVariableMetric();
  expect(metric).toBeDefined();

  const text = await scrape(t.internalApp);
  const samples = text
    .split('\n')
    .filter((line) => !line.startsWith('#') && new RegExp(`^${metric}(\\{| )`).test(line));
  expect({ metric, served: samples.length > 0 }).toEqual({ metric, served: true });
});
