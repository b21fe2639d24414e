import type { Logger } from './logger';

/**
 * SIGTERM/SIGINT from the first line of start-up on. In a container the process is PID 1,
 * and the kernel drops any signal PID 1 has no handler for: a pod told to stop while it was
 * still starting (waiting for its database, its spool, the embedded PostgreSQL) would ignore
 * the kubelet and be killed at the end of its grace period. So the handlers are installed
 * before anything that can take time, and a signal during start-up undoes what has started
 * (in reverse order) and exits 0. Once the service is up, `ready` hands over to its graceful
 * shutdown.
 */
export interface ShutdownSignals {
  /** Registers how to undo a start-up step if a signal arrives before `ready`. */
  onAbort(undo: () => Promise<unknown> | void): void;
  /** Start-up is complete: a signal from now on runs `shutdown`, then the process exits 0. */
  ready(shutdown: (signal: NodeJS.Signals) => Promise<void>): void;
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

export function trapShutdownSignals(logger: Logger): ShutdownSignals {
  const undos: Array<() => Promise<unknown> | void> = [];
  let shutdown: ((signal: NodeJS.Signals) => Promise<void>) | undefined;
  let received = false;

  const abortStartup = async (signal: NodeJS.Signals): Promise<void> => {
    logger.info({ signal }, 'signal during start-up: stopping what has started');
    for (const undo of undos.reverse()) await undo();
    logger.info('stopped during start-up');
  };

  for (const signal of SIGNALS) {
    process.on(signal, () => {
      if (received) return;
      received = true;
      (shutdown ?? abortStartup)(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }

  return {
    onAbort(undo) {
      undos.push(undo);
    },
    ready(fn) {
      shutdown = fn;
    },
  };
}
