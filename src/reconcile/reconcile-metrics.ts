import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { METRIC_PREFIX } from '../metrics/metrics';
import type { Api } from '../messages/statuses';
import type { SweepStats } from './reconcile.repository';
import type { LookupOutcome } from './reconcile-worker';

/** The sweep's metrics (backlog and oldest age read from the worker's last look). */
export function createReconcileMetrics(
  registry: Registry,
  read: () => SweepStats | null,
): { onLookup(api: Api, outcome: LookupOutcome): void } {
  const registers = [registry];
  const name = (suffix: string): string => `${METRIC_PREFIX}reconcile_${suffix}`;
  const lookups = new Counter({
    name: name('lookups_total'),
    help: 'Reconciliation lookups at SignalWire, by API and outcome (updated, unchanged, not_found, unauthorized, no_credentials, failed; not_recorded: what came of it could not be written, the message is looked up again)',
    labelNames: ['api', 'outcome'] as const,
    registers,
  });
  const gauge = (suffix: string, help: string, value: (s: SweepStats) => number): void => {
    new Gauge({
      name: name(suffix),
      help,
      registers,
      collect() {
        const stats = read();
        // Unknown before the sweep's first look: NaN, not 0 (see relay-metrics.ts).
        this.set(stats ? value(stats) : NaN);
      },
    });
  };
  gauge(
    'due',
    'Messages due for a reconciliation lookup (of projects in SIGNALWIRE_CREDENTIALS)',
    (s) => s.due,
  );
  gauge(
    'oldest_due_age_seconds',
    'How long the longest-waiting due message has waited',
    (s) => s.oldestDueSeconds,
  );
  gauge('stuck', 'Messages still not final after the last lookup', (s) => s.stuck);
  return {
    onLookup(api, outcome) {
      lookups.inc({ api, outcome });
    },
  };
}
