import type { Logger } from '../logger';

/**
 * SIGTERM/SIGINT from the first line of start-up on. In a container the process is PID 1,
 * and the kernel drops any signal PID 1 has no handler for: a pod told to stop while it was
 * still starting (waiting for its database, its spool, the embedded PostgreSQL) would ignore
 * the kubelet and be killed at the end of its grace period. So these handlers are installed
 * before anything that can take time; a signal during start-up undoes what must not outlive
 * the process (a child PostgreSQL, in reverse order of start) and exits 0. Once the service
 * is up, `complete()` removes them and the service's graceful shutdown takes over.
 */
export interface StartupSignals {
  /** Registers how to undo a start-up step if a signal arrives before `complete()`. */
  onAbort(undo: () => Promise<unknown> | void): void;
  /** Start-up is done: the caller registers its own shutdown handlers right after. */
  complete(): void;
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

export function trapStartupSignals(logger: Logger): StartupSignals {
  const undos: Array<() => Promise<unknown> | void> = [];
  let aborting = false;

  const abort = async (signal: NodeJS.Signals): Promise<void> => {
    logger.info({ signal }, 'signal during start-up: stopping what has started');
    for (const undo of undos.reverse()) await undo();
    logger.info('stopped during start-up');
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (aborting) return;
    aborting = true;
    abort(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'stopping during start-up failed');
        process.exit(1);
      },
    );
  };

  for (const signal of SIGNALS) process.on(signal, onSignal);
  return {
    onAbort(undo) {
      undos.push(undo);
    },
    complete() {
      for (const signal of SIGNALS) process.off(signal, onSignal);
    },
  };
}
