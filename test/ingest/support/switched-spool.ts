import { createDb } from '../../../src/db/database';
import type { DatabaseHandle } from '../../../src/db/database';
import { createGroupCommitRecorder } from '../../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../../src/ingest/group-commit-recorder';
import { openSpool } from '../../../src/ingest/spool';
import type { Spool } from '../../../src/ingest/spool';
import { createLogger } from '../../../src/logger';
import { recordEvents } from '../../../src/messages/record-events';
import { createTestApp } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';
import { createTcpSwitch } from './tcp-switch';
import type { TcpSwitch } from './tcp-switch';

const logger = createLogger('silent');

/**
 * The service's public app on the spool in `dir`, its recorder reaching the file's database
 * through a TCP relay the test cuts: PostgreSQL keeps running (other files share it), but the
 * recorder sees refused and reset connections, as in a real outage.
 */
export interface SwitchedSpool {
  t: TestApp;
  tcp: TcpSwitch;
  viaSwitch: DatabaseHandle;
  spool: Spool;
  recorder: GroupCommitRecorder;
  close(): Promise<void>;
}

export async function switchedSpool(dir: string, write = recordEvents): Promise<SwitchedSpool> {
  const h = {} as SwitchedSpool;
  h.spool = await openSpool({ dir, logger });
  h.tcp = await createTcpSwitch();
  h.t = await createTestApp(
    {},
    {
      recorder: (deps, database) => {
        h.viaSwitch = createDb(h.tcp.relay(database.url), 4);
        h.recorder = createGroupCommitRecorder({
          db: h.viaSwitch.db,
          logger: deps.logger,
          spool: h.spool,
          batchMax: 50,
          batchWaitMs: 2,
          queueMax: 1000,
          maxInFlight: 2,
          probeIntervalMs: 50,
          replayChunk: 7,
          write,
        });
        deps.lifecycle.ingest = h.recorder;
        return h.recorder;
      },
    },
  );
  h.close = async () => {
    await h.t.close();
    await h.viaSwitch.db.destroy();
    await h.tcp.close();
  };
  return h;
}
