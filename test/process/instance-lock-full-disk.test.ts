import fsPromises from 'node:fs/promises';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  InstanceLockedError,
  acquireInstanceLock,
  askHolder,
  findHolder,
} from '../../src/process/instance-lock';

/**
 * On a full disk the lock's record cannot be written: the directory is then held by an empty
 * record and the holder's socket, which answers for it from memory. It must be held all the
 * same — a second taker refused, naming the holder — or two processes would replay one spool.
 */

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-lock-full-'));
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

function diskFullOnce(): void {
  jest
    .spyOn(fsPromises, 'writeFile')
    .mockImplementationOnce(() =>
      Promise.reject(
        Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
      ),
    );
}

test('When the directory is taken on a full disk, then a second taker is still refused with who holds it, and can take it once released', async () => {
  diskFullOnce();
  const held = await acquireInstanceLock({ dir, command: 'first', details: { port: 8080 } });

  const refused = await acquireInstanceLock({ dir, command: 'second', foreignWaitMs: 0 }).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(refused).toBeInstanceOf(InstanceLockedError);
  expect((refused as InstanceLockedError).holder).toMatchObject({
    pid: process.pid,
    command: 'first',
    details: { port: 8080 },
  });
  expect(await findHolder(dir)).toMatchObject({ command: 'first' });
  held.handle('ping', async () => 'pong');
  expect(await askHolder(dir, 'ping')).toBe('pong');

  await held.release();
  const next = await acquireInstanceLock({ dir, command: 'second' });
  expect(next.holder.command).toBe('second');
  await next.release();
});

test('When a holder that took the directory on a full disk has died, then a newcomer takes it once its heartbeat is stale', async () => {
  // Its empty record, its socket gone with it, its heartbeat a minute old.
  const record = path.join(dir, '.lock.000000000001');
  await writeFile(record, '');
  const minuteAgo = new Date(Date.now() - 60_000);
  await utimes(record, minuteAgo, minuteAgo);

  const lock = await acquireInstanceLock({ dir, command: 'newcomer' });
  expect(lock.holder).toMatchObject({ command: 'newcomer', generation: 2 });
  await lock.release();
});
