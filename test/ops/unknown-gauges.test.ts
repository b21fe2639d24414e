import { Registry } from 'prom-client';
import { createReconcileMetrics } from '../../src/reconcile/reconcile-metrics';
import { createRelayMetrics } from '../../src/relay/relay-metrics';

/**
 * The relay's and the sweep's gauges are database-wide counts each pod reads every few seconds.
 * A pod started while the database is out has not read them yet: they are served as NaN
 * (unknown), not 0, so the jump to the real count once the database answers is no growth to the
 * "growing" alerts (test/ops/prometheus-rules.test.ts evaluates that) and no dip on a dashboard.
 */

// prom-client writes NaN as `Nan`; Prometheus reads the value with Go's ParseFloat, which
// takes NaN in any case (promtool check metrics accepts it).
const NAN = 'Na[Nn]';

test('When the relay worker has not looked at the outbox yet, then its counts are served as unknown (NaN), and as read once it has', async () => {
  const registry = new Registry();
  let stats: { pending: number; dead: number; oldestPendingSeconds: number } | null = null;
  createRelayMetrics(registry, () => ({ stats: stats as never, openHosts: 0 }));
  const before = await registry.metrics();
  for (const name of ['pending', 'dead', 'oldest_pending_age_seconds']) {
    expect(before).toMatch(new RegExp(`^sw_status_relay_${name} ${NAN}$`, 'm'));
  }
  expect(before).toMatch(/^sw_status_relay_open_circuits 0$/m);

  stats = { pending: 3, dead: 40, oldestPendingSeconds: 12 };
  const after = await registry.metrics();
  expect(after).toMatch(/^sw_status_relay_dead 40$/m);
  expect(after).toMatch(/^sw_status_relay_pending 3$/m);
});

test('When the sweep has not looked yet, then its counts are served as unknown (NaN)', async () => {
  const registry = new Registry();
  createReconcileMetrics(registry, () => null);
  const text = await registry.metrics();
  for (const name of ['due', 'oldest_due_age_seconds', 'stuck']) {
    expect(text).toMatch(new RegExp(`^sw_status_reconcile_${name} ${NAN}$`, 'm'));
  }
});
