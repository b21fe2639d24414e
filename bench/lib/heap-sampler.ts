import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

/**
 * Preloaded into a server (`--import`, as bench/feed-gc-probe.ts does with PROBE_NODE_FLAGS):
 * V8's sampling heap profiler from HEAP_SAMPLE_FROM_MS to HEAP_SAMPLE_TO_MS after start, its
 * profile written to HEAP_SAMPLE_FILE (a .heapprofile: Chrome DevTools, or
 * bench/heap-profile-summary.ts). HEAP_SAMPLE_KEEP says which sampled allocations the profile
 * holds: `all` (every one), `survivors` (default: those no scavenge freed — they survived a
 * young-generation collection, or are still live — whether a full GC freed them since or
 * not) or `live` (those still live at the end).
 */
const file = process.env.HEAP_SAMPLE_FILE;

if (file) {
  const from = Number(process.env.HEAP_SAMPLE_FROM_MS ?? 10_000);
  const to = Number(process.env.HEAP_SAMPLE_TO_MS ?? 15_000);
  const keep = process.env.HEAP_SAMPLE_KEEP ?? 'survivors';
  const session = new Session();
  session.connect();
  setTimeout(() => {
    session.post('HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: keep !== 'live',
      includeObjectsCollectedByMinorGC: keep === 'all',
    });
  }, from).unref();
  setTimeout(() => {
    session.post('HeapProfiler.getSamplingProfile', (error, result) => {
      if (!error) writeFileSync(file, JSON.stringify(result.profile));
      session.post('HeapProfiler.stopSampling');
    });
  }, to).unref();
}

/** HEAP_SNAPSHOT_FILE: one heap snapshot HEAP_SNAPSHOT_AT_MS after start (investigation). */
const snapshotFile = process.env.HEAP_SNAPSHOT_FILE;
if (snapshotFile) {
  setTimeout(
    () => {
      const session = new Session();
      session.connect();
      const chunks: string[] = [];
      session.on('HeapProfiler.addHeapSnapshotChunk', (message) =>
        chunks.push(message.params.chunk),
      );
      session.post('HeapProfiler.takeHeapSnapshot', { reportProgress: false }, () => {
        writeFileSync(snapshotFile, chunks.join(''));
        session.disconnect();
      });
    },
    Number(process.env.HEAP_SNAPSHOT_AT_MS ?? 10_000),
  ).unref();
}
