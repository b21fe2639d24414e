import type { ChildProcess } from 'node:child_process';
import os from 'node:os';

/**
 * What a benchmark leaves on the machine — request pools of tens of MB in the temp directory,
 * a git worktree, an embedded PostgreSQL and its data, the servers and load generators it
 * started — is removed however the run ends: normally, on an error, or on SIGINT/SIGTERM
 * (Ctrl-C, `kill`, a cancelled CI job), after which it exits 130 or 143 as a shell expects.
 * Without a handler Node dies of those signals at once and no `finally` runs. The npm scripts
 * run a benchmark as `node --import tsx`, not with the `tsx` command: that one passes a signal
 * on and kills its child with SIGKILL unless it answers within 30 ms, which a benchmark busy
 * with its load can miss — in the middle of its clean-up.
 *
 * A benchmark registers each thing as it makes it (onCleanup, stopOnCleanup) and runs its main
 * function through runBench. Steps run one at a time, the last registered first: a server stops
 * before the database it writes to, the database before the directory that holds it.
 */

type Step = () => unknown;

interface Entry {
  step: Step;
  done?: Promise<void>;
}

const pending: Entry[] = [];

/**
 * Registers `step` for the end of the run, and returns a function that runs it now (once: a
 * `finally` and a signal's clean-up may both ask for it).
 */
export function onCleanup(step: Step): () => Promise<void> {
  const entry: Entry = { step };
  pending.push(entry);
  return () => runStep(entry);
}

/**
 * A child process the run stops (SIGTERM, then SIGKILL after `graceMs`) unless it has ended by
 * then. A child of the terminal's process group gets Ctrl-C itself, but not a SIGTERM sent to
 * the benchmark alone: a load generator would run on for the rest of its duration. `group`:
 * the child was spawned `detached`, and its whole process group is stopped and waited for —
 * a command whose own children would otherwise write on into what the clean-up removes.
 */
export function stopOnCleanup(
  child: ChildProcess,
  { graceMs = 5_000, group = false }: { graceMs?: number; group?: boolean } = {},
): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const entry: Entry = { step: () => stopChild(child, graceMs, group) };
  pending.push(entry);
  const forget = (): void => {
    if (entry.done === undefined) remove(entry);
  };
  child.once('exit', forget);
  child.once('error', forget);
}

/**
 * Something being started (a server, a database) that `stop` stops on clean-up, even when the
 * run ends while it is still starting. Returns it once started, and the function that stops it
 * now (once).
 */
export async function started<T>(
  starting: Promise<T>,
  stop: (resource: T) => unknown,
): Promise<[T, () => Promise<void>]> {
  const stopNow = onCleanup(async () => {
    const resource = await starting.then(
      (value) => ({ value }),
      () => undefined, // it failed to start: the run reports that, there is nothing to stop
    );
    if (resource) await stop(resource.value);
  });
  return [await starting, stopNow];
}

/**
 * Runs a benchmark's main function, then its clean-up, and exits: 0, 1 after an error, or
 * 128 + the signal's number after SIGINT/SIGTERM, which end the run at once.
 */
export function runBench(main: () => Promise<void>): void {
  let signal: NodeJS.Signals | undefined;
  let outcome = 0;
  let ending: Promise<void> | undefined;
  const cleanUpAndExit = (): void => {
    ending ??= cleanUp().then(() =>
      process.exit(signal ? 128 + os.constants.signals[signal] : outcome),
    );
  };
  const stop = (received: NodeJS.Signals): void => {
    // One Ctrl-C can arrive more than once (from the terminal, then relayed by npm): one
    // clean-up. It is not cut short either: what it has not removed would stay.
    if (signal) return;
    signal = received;
    console.error(`\n${received}: stopping and cleaning up…`);
    cleanUpAndExit();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  main().then(cleanUpAndExit, (error: unknown) => {
    // After a signal, the run's own errors are those of its processes being stopped.
    if (!signal) {
      console.error(error);
      outcome = 1;
    }
    cleanUpAndExit();
  });
}

async function cleanUp(): Promise<void> {
  // A step registered meanwhile (a server the run was starting) is run too.
  for (let last = pending.at(-1); last !== undefined; last = pending.at(-1)) {
    await runStep(last);
  }
}

function runStep(entry: Entry): Promise<void> {
  entry.done ??= (async () => {
    try {
      await entry.step();
    } catch (error) {
      console.error('clean-up step failed:', error);
    } finally {
      remove(entry);
    }
  })();
  return entry.done;
}

function remove(entry: Entry): void {
  const index = pending.indexOf(entry);
  if (index !== -1) pending.splice(index, 1);
}

async function stopChild(child: ChildProcess, graceMs: number, group: boolean): Promise<void> {
  const pid = child.pid;
  if (child.exitCode !== null || child.signalCode !== null || pid === undefined) return;
  // Signal 0 only asks whether the group still has a process.
  const signal = (name: NodeJS.Signals | 0): boolean => {
    try {
      return group ? process.kill(-pid, name) : child.kill(name);
    } catch {
      return false; // gone meanwhile
    }
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), graceMs);
  await exited;
  // The group's other processes may outlive its leader a moment.
  while (group && signal(0)) await new Promise((resolve) => setTimeout(resolve, 50));
  clearTimeout(timer);
}
