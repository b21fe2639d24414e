import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { METRIC_PREFIX } from '../metrics/metrics';
import type { OutboxStats } from './relay.repository';

export type AttemptLabel = 'delivered' | 'retry' | 'dead' | 'refused';

/** The relay's metrics, on the service's registry (DESIGN §10: attempts, pending, dead, age). */
export interface RelayMetrics {
  onAttempt(outcome: AttemptLabel): void;
  /** Relays made dead without another request: their schedule ran out, their host failing. */
  onExpired(count: number): void;
}

export function createRelayMetrics(
  registry: Registry,
  read: () => { stats: OutboxStats | null; openHosts: number },
): RelayMetrics {
  const registers = [registry];
  const name = (suffix: string): string => `${METRIC_PREFIX}relay_${suffix}`;
  const attempts = new Counter({
    name: name('attempts_total'),
    help: "Relay attempts to callers' own status callbacks, by outcome (delivered, retry, dead, refused: address or URL not allowed)",
    labelNames: ['outcome'] as const,
    registers,
  });
  const expired = new Counter({
    name: name('expired_total'),
    help: 'Relay jobs made dead without another attempt: their retry schedule ran out while their host kept failing (paused by the circuit breaker)',
    registers,
  });
  const gauge = (suffix: string, help: string, value: () => number): void => {
    new Gauge({
      name: name(suffix),
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  };
  // Read from the worker's last look at the outbox (every few seconds), not queried per scrape.
  // Before the first look (a pod started while the database is out) the counts are unknown:
  // NaN, not 0, so a jump from 0 to the real count is no growth to the alerts (delta is NaN,
  // which `max by` passes over) and no dip on the dashboards.
  gauge('pending', 'Relay jobs waiting to be delivered', () => read().stats?.pending ?? NaN);
  gauge(
    'dead',
    'Relay jobs that exhausted their retries or were refused',
    () => read().stats?.dead ?? NaN,
  );
  gauge(
    'oldest_pending_age_seconds',
    'Age of the oldest relay job not yet delivered',
    () => read().stats?.oldestPendingSeconds ?? NaN,
  );
  gauge(
    'open_circuits',
    'Destination hosts paused by the circuit breaker (this replica)',
    () => read().openHosts,
  );
  return {
    onAttempt(outcome) {
      attempts.inc({ outcome });
    },
    onExpired(count) {
      expired.inc(count);
    },
  };
}
