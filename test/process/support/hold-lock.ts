import { acquireInstanceLock } from '../../../src/process/instance-lock';

/**
 * A process that takes the lock of the directory given as its argument, says `held` on stdout
 * and waits to be killed (or prints the error and exits 3 when the directory is taken).
 */
acquireInstanceLock({ dir: process.argv[2]!, command: 'test holder' }).then(
  (lock) => {
    lock.handle('whoami', async () => ({ pid: process.pid }));
    process.stdout.write(`held ${lock.holder.generation}\n`);
    // Keeps the process alive (the lock's own socket does not).
    setInterval(() => undefined, 60_000);
  },
  (error: unknown) => {
    process.stdout.write(`refused ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(3);
  },
);
