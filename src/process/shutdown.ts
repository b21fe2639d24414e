import type { Server } from 'node:http';
import type { Config } from '../config';
import type { Lifecycle } from '../http/health.routes';
import type { GroupCommitRecorder } from '../ingest/group-commit-recorder';
import type { Logger } from '../logger';
import { closeServer } from './listen';

/**
 * SIGTERM (or SIGINT) to exit, within SHUTDOWN_GRACE_MS from the signal:
 * 1. readiness turns 503, and the process keeps serving for SHUTDOWN_DELAY_MS while the load
 *    balancer takes it out;
 * 2. the listeners close; in-flight requests get up to SHUTDOWN_DRAIN_MS, and sends the proxy
 *    forwarded to SignalWire their answer (until shortly before the grace period ends: a send
 *    whose answer could come later is not forwarded, but answered 503 "not sent");
 * 3. everything acknowledged is committed, or spooled when the database is unreachable; a
 *    spool that is not empty keeps being replayed while the database allows, until the grace
 *    period is spent less CLOSE_RESERVE_MS;
 * 4. pools and the embedded database close, and the process exits 0. What the spool still
 *    holds is said at warn level and stays on disk for the next process on its directory.
 * If a step hangs anyway (a connection that never answers), the process exits 0 when the
 * grace period is spent: everything acknowledged is on disk by then. A second signal cuts
 * the replay short.
 */
export interface ShutdownDeps {
  config: Pick<Config, 'shutdownDelayMs' | 'shutdownDrainMs' | 'shutdownGraceMs'>;
  logger: Logger;
  lifecycle: Lifecycle;
  servers: readonly Server[];
  recorder: GroupCommitRecorder;
  /** Where spooled events wait (said when the grace period cuts the shutdown short). */
  spoolDir?: string;
  /** Run in order as soon as readiness turns off (long-polls answer, so clients move on). */
  onDraining?: ReadonlyArray<() => Promise<unknown>>;
  /** Stopped in order after the listeners, before the recorder drains (background producers). */
  beforeDrain?: ReadonlyArray<() => Promise<unknown>>;
  /** Closed in order once the recorder has drained (simulator, pool, embedded PostgreSQL). */
  closers: ReadonlyArray<() => Promise<unknown>>;
  /** Called last with the exit code (process.exit in main.ts). */
  exit(code: number): void;
}

/** Kept for closing pools and the embedded database after the replay stops. */
export const CLOSE_RESERVE_MS = 1_000;

/** Kept after the connections are cut for the background work to stop and the recorder to drain. */
export const CUT_RESERVE_MS = 2_000;

/** Runs the shutdown on the first signal; a second one stops the replay at once. */
export function shutdownOnSignals(deps: ShutdownDeps): void {
  let shutdown: ReturnType<typeof startShutdown> | undefined;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (shutdown) {
        deps.logger.warn({ signal }, 'second signal: stopping the replay now');
        shutdown.hurry();
        return;
      }
      shutdown = startShutdown(deps, signal);
    });
  }
}

export function startShutdown(
  deps: ShutdownDeps,
  signal: string,
): { hurry(): void; done: Promise<void> } {
  const { config, logger, lifecycle, recorder } = deps;
  // The monotonic clock: an NTP step during the grace period must not move the cut (a send
  // forwarded that the process would not stay up to answer) or the replay's end.
  const began = performance.now();
  const deadline = began + config.shutdownGraceMs;
  const hurry = new AbortController();
  let exited = false;
  const exit = (code: number): void => {
    if (exited) return;
    exited = true;
    clearTimeout(backstop);
    deps.exit(code);
  };
  const backstop = setTimeout(() => {
    const { spool } = recorder.status();
    logger.warn(
      { grace_ms: config.shutdownGraceMs, depth: spool.depth, dir: deps.spoolDir },
      'shutdown grace period spent: exiting now (spooled events stay on disk)',
    );
    exit(0);
  }, config.shutdownGraceMs);

  // The send proxy forwards nothing whose answer could come after this (src/proxy), and the
  // drain waits for the sends under way until then: a little before the pools must close.
  const connectionsCutAt = deadline - CLOSE_RESERVE_MS - CUT_RESERVE_MS;
  lifecycle.connectionsCutAt = connectionsCutAt;

  const done = (async () => {
    lifecycle.draining = true;
    for (const drain of deps.onDraining ?? []) await drain();
    // Readiness now fails, but the load balancer still routes here until the endpoints
    // update: keep serving for SHUTDOWN_DELAY_MS, then stop accepting connections.
    logger.info(
      { signal, delay_ms: config.shutdownDelayMs, grace_ms: config.shutdownGraceMs },
      'shutting down: readiness off',
    );
    await sleep(config.shutdownDelayMs, hurry.signal);
    logger.info({ drain_ms: config.shutdownDrainMs }, 'closing listeners, draining requests');
    const sends = lifecycle.sends;
    const hold = sends && { settled: () => sends.settled(), until: connectionsCutAt };
    const drained = await Promise.all(
      deps.servers.map((server) => closeServer(server, config.shutdownDrainMs, hold)),
    );
    if (drained.includes(false)) logger.warn('drain deadline passed: open connections were cut');
    for (const stop of deps.beforeDrain ?? []) await stop();
    await recorder.drain({ deadline: deadline - CLOSE_RESERVE_MS, signal: hurry.signal });
    for (const close of deps.closers) await close();
    logger.info({ ms: Math.round(performance.now() - began) }, 'stopped');
  })();
  done.then(
    () => exit(0),
    (error: unknown) => {
      logger.error({ err: error }, 'shutdown failed');
      exit(1);
    },
  );
  return { hurry: () => hurry.abort(), done };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
