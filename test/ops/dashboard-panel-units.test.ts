import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { DASHBOARD_FILE } from '../../scripts/grafana-dashboard';

/**
 * A panel draws every series in its own unit unless an override says otherwise. The relay
 * panel's oldest pending relay (an age in seconds) was drawn in req/s beside the attempt
 * rates: 3 hours read "10.8K req/s" and flattened the rates to zero; the feed panel's
 * listener-up (0 or 1) read "1 s". Read from the committed dashboard, as Grafana loads it.
 * Found by review.
 */

interface Override {
  matcher: { id: string; options: string };
  properties: Array<{ id: string; value: unknown }>;
}
interface Panel {
  title: string;
  description?: string;
  fieldConfig?: { defaults: { unit?: string }; overrides: Override[] };
  targets?: Array<{ refId: string; expr: string; legendFormat: string }>;
}

const configMap = yaml.load(readFileSync(DASHBOARD_FILE, 'utf8')) as {
  data: Record<string, string>;
};
const panels = (JSON.parse(configMap.data['sw-status.json']!) as { panels: Panel[] }).panels.filter(
  (panel) => panel.targets !== undefined,
);

/** The unit and axis a series is drawn with: the panel's, or its override's. */
function drawnWith(panel: Panel, refId: string): { unit?: string; axis?: unknown } {
  const override = panel.fieldConfig!.overrides.find(
    (o) => o.matcher.id === 'byFrameRefID' && o.matcher.options === refId,
  );
  const property = (id: string) => override?.properties.find((p) => p.id === id)?.value;
  return {
    unit: (property('unit') as string | undefined) ?? panel.fieldConfig!.defaults.unit,
    axis: property('custom.axisPlacement'),
  };
}

/** What a query measures, by the metric it reads: a time, a 0/1 state, or something else. */
function kind(expr: string): 'time' | 'state' | 'other' {
  if (/histogram_quantile/.test(expr)) return 'time';
  if (/rate\(|increase\(/.test(expr)) return 'other';
  if (/_(age|lag|offset)_seconds\b|_seconds\{/.test(expr)) return 'time';
  if (/_up\{|_ready\{/.test(expr)) return 'state';
  return 'other';
}

test('When a panel draws a time (an age, a lag) beside series of another unit, then that series is drawn in seconds on its own axis', () => {
  const wrong: string[] = [];
  for (const panel of panels) {
    for (const target of panel.targets!) {
      const drawn = drawnWith(panel, target.refId);
      if (kind(target.expr) === 'time' && drawn.unit !== 's') {
        wrong.push(`${panel.title}: ${target.legendFormat} in ${drawn.unit}`);
      }
      if (kind(target.expr) === 'state' && drawn.unit === 's') {
        wrong.push(`${panel.title}: ${target.legendFormat} (0 or 1) in seconds`);
      }
    }
  }
  expect(wrong).toEqual([]);
});

test('When a panel’s description names a right axis, then a series of its is drawn there', () => {
  const named = panels.filter((panel) => /right axis/.test(panel.description ?? ''));
  expect(named.map((panel) => panel.title)).toContain('Relay attempts and oldest pending');
  for (const panel of named) {
    const onTheRight = panel.targets!.filter(
      (target) => drawnWith(panel, target.refId).axis === 'right',
    );
    expect({ panel: panel.title, onTheRight: onTheRight.length > 0 }).toEqual({
      panel: panel.title,
      onTheRight: true,
    });
  }
});
