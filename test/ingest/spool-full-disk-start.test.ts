import { execFileSync } from 'node:child_process';
import fsPromises from 'node:fs/promises';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';

/**
 * A spool volume that filled up during an outage, then a restart (OOM, a new pod on the same
 * claim): the spool must still open — its instance lock included — so that its events can be
 * replayed, which frees the disk. Refused there, the pod would crash-loop with every
 * acknowledged callback stuck on the volume, and `spool replay` would fail the same way.
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

const diskFull = (): Promise<never> =>
  Promise.reject(
    Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
  );

describe('on any machine (writes of new data refused with ENOSPC)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-full-')), 'spool');
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await rm(path.dirname(dir), { recursive: true, force: true });
  });

  test('When the spool volume is full and the process restarts, then the spool still opens and its events are replayed', async () => {
    const first = await openSpool({ dir, logger });
    await first.append([event(), event(), event()]);
    await first.close();
    // The instance lock's record is written with writeFile: the first write a start makes.
    jest.spyOn(fsPromises, 'writeFile').mockImplementation(diskFull);

    const second = await openSpool({ dir, logger });
    expect(second.depth()).toBe(3);
    let replayed = 0;
    await second.replay(async (events) => {
      replayed += events.length;
    }, 10);
    expect(replayed).toBe(3);
    await second.close();
  });
});

// Mounting a tmpfs needs root; CI and most machines run the tests as another user.
const asRoot = process.getuid?.() === 0;
(asRoot ? describe : describe.skip)('on a real full disk (a 256 KiB tmpfs; root only)', () => {
  let mountPoint: string;
  beforeEach(async () => {
    mountPoint = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mountPoint]);
  });
  afterEach(async () => {
    execFileSync('umount', [mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });

  /** Fills the file system with one file, to the last byte it takes. */
  async function fill(dir: string): Promise<void> {
    const handle = await open(path.join(dir, 'filler'), 'w');
    const chunk = Buffer.alloc(4096, 1);
    try {
      for (;;) await handle.write(chunk);
    } catch {
      // ENOSPC: full
    } finally {
      await handle.close();
    }
  }

  test('When the spool volume is full and the process restarts, then the spool still opens and replaying its events frees the disk', async () => {
    const dir = path.join(mountPoint, 'spool');
    const first = await openSpool({ dir, logger });
    await first.append([event(), event(), event()]);
    await first.close();
    await fill(mountPoint);
    await expect(writeFile(path.join(mountPoint, 'probe'), 'x')).rejects.toMatchObject({
      code: 'ENOSPC',
    });

    const second = await openSpool({ dir, logger });
    expect(second.depth()).toBe(3);
    const replayed: StatusEvent[] = [];
    await second.replay(async (events) => {
      replayed.push(...events);
    }, 10);
    expect(replayed).toHaveLength(3);
    expect((await readdir(dir)).filter((name) => name.startsWith('spool-'))).toEqual([]);
    await second.close();
  });
});
