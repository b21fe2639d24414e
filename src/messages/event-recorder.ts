import type { Db } from '../db/database';
import { recordEvents } from './record-events';
import type { RecordOptions, RecordOutcome } from './record-events';
import type { StatusEvent } from './status-event';

/**
 * Where accepted events go. `record` resolves only once the event is durable (committed, or
 * a duplicate of a committed one): callers acknowledge SignalWire after it, never before.
 */
export interface EventRecorder {
  record(event: StatusEvent): Promise<RecordOutcome>;
  /** Waits for pending writes to finish (graceful shutdown). */
  drain(): Promise<void>;
}

/**
 * One transaction per event: the simplest durable recorder. The service records through the
 * group-commit recorder (src/ingest/group-commit-recorder.ts); tests that need each callback
 * stored on its own use this one.
 */
export function directRecorder(db: Db, options: RecordOptions = {}): EventRecorder {
  const pending = new Set<Promise<unknown>>();
  return {
    async record(event) {
      const write = recordEvents(db, [event], options);
      pending.add(write);
      try {
        const [outcome] = await write;
        return outcome!;
      } finally {
        pending.delete(write);
      }
    },
    async drain() {
      await Promise.allSettled([...pending]);
    },
  };
}
