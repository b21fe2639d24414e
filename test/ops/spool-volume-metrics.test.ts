import { statfs } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createMetrics } from '../../src/metrics/metrics';

/**
 * The spool volume's room on /metrics (SwStatusSpoolVolumeFilling reads it): a spooled callback
 * takes about 1.3 kB, and a full volume refuses callbacks, which the spool's depth alone does
 * not foretell.
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-volume-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A gauge's value in Prometheus' text format, or undefined when it has none. */
function value(text: string, metric: string): number | undefined {
  const match = new RegExp(`^${metric} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

test('When /metrics is scraped, then it reports the bytes the spool may still write on its volume and the volume’s size, as statfs says', async () => {
  const metrics = createMetrics({ processMetrics: false, spoolDir: dir });
  const text = await metrics.registry.metrics();
  const stats = await statfs(dir);
  const available = value(text, 'sw_status_spool_volume_available_bytes');
  const size = value(text, 'sw_status_spool_volume_size_bytes');
  expect(size).toBe(stats.blocks * stats.bsize);
  // Other writers on the volume move the free space between the two reads: within a MiB.
  expect(Math.abs(available! - stats.bavail * stats.bsize)).toBeLessThan(1024 ** 2);
  expect(available).toBeLessThanOrEqual(size!);
});

test('When the spool directory cannot be read, then the scrape still answers, the volume’s values unknown (NaN)', async () => {
  const metrics = createMetrics({ processMetrics: false, spoolDir: path.join(dir, 'missing') });
  const text = await metrics.registry.metrics();
  expect(value(text, 'sw_status_spool_volume_available_bytes')).toBeNaN();
  expect(value(text, 'sw_status_spool_volume_size_bytes')).toBeNaN();
});
