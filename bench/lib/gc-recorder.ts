import { writeFileSync } from 'node:fs';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';

/**
 * Preloaded into a server by bench/feed-gc-probe.ts (`--import`): records every garbage
 * collection's pause — when (epoch ms), which kind, how long — and writes them as JSON lines
 * to GC_RECORD_FILE when the process exits, so that the probe can take the pauses of each
 * measured phase apart. Held in memory meanwhile: writing on every collection would be I/O
 * inside the measurement.
 */
const file = process.env.GC_RECORD_FILE;
const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

if (file) {
  const pauses: string[] = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // Node 20 types PerformanceEntry without `detail`; gc entries carry { kind, flags }.
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind ?? 0;
      pauses.push(
        JSON.stringify({
          at: performance.timeOrigin + entry.startTime,
          kind: KINDS[kind] ?? String(kind),
          ms: entry.duration,
        }),
      );
    }
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () => writeFileSync(file, pauses.join('\n') + '\n'));
}
