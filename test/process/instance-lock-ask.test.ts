import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { acquireInstanceLock, askHolder } from '../../src/process/instance-lock';

/**
 * `askHolder` (the spool command's `status` and `requeue-dead-letters` beside a running
 * process) may wait long for an answer — a requeue can take minutes — but must never wait on a
 * holder that will not answer at all: one too busy or stopped (the kernel still accepts its
 * connections), or one letting the directory go while the request is in flight. Those fail
 * within seconds, saying so; a long request that the holder has taken up is waited for.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');

let dir: string;
const children: ChildProcess[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-lock-ask-'));
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/** A request whose handler waits until the test lets it go; `entered` once it has begun. */
function heldRequest(): {
  handler: () => Promise<unknown>;
  entered: Promise<void>;
  answer(value: unknown): void;
} {
  let enter!: () => void;
  const entered = new Promise<void>((resolve) => (enter = resolve));
  let answer!: (value: unknown) => void;
  const answered = new Promise<unknown>((resolve) => (answer = resolve));
  return {
    handler: async () => {
      enter();
      return answered;
    },
    entered,
    answer,
  };
}

test('When the holder lets the directory go while a request it took up is unanswered, then the ask fails at once saying so, and the release does not wait for it', async () => {
  const lock = await acquireInstanceLock({ dir, command: 'releasing holder' });
  const slow = heldRequest();
  lock.handle('slow', slow.handler);
  const asked = askHolder(dir, 'slow').then(
    () => 'answered',
    (error: Error) => error,
  );
  await slow.entered;

  await lock.release();

  const outcome = await asked;
  expect(outcome).toBeInstanceOf(Error);
  expect((outcome as Error).message).toMatch(/let .* go before answering slow/);
  slow.answer('too late'); // the handler's late answer goes nowhere
});

test('When the holder is stopped (its kernel still accepts the connection), then the ask fails within seconds saying it did not take the request up', async () => {
  const holder = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'support', 'hold-lock.ts'), dir],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(holder);
  await new Promise<void>((resolve) =>
    holder.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      if (chunk.includes('held')) resolve();
    }),
  );
  holder.kill('SIGSTOP');
  try {
    const started = Date.now();
    const outcome = await askHolder(dir, 'whoami', { ackTimeoutMs: 1_000 }).catch(
      (error: Error) => error,
    );

    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/did not take the request up within 1000 ms/);
    expect(Date.now() - started).toBeLessThan(10_000);
  } finally {
    holder.kill('SIGCONT');
  }
});

test('When a request the holder took up runs longer than the acknowledgement wait, then its answer is waited for', async () => {
  const lock = await acquireInstanceLock({ dir, command: 'busy holder' });
  try {
    const slow = heldRequest();
    lock.handle('slow', slow.handler);
    // The holder is in this process and takes the request up at once; 2 s is room for a
    // loaded machine to deliver that (100 ms was not much), the request then runs past it.
    const asked = askHolder(dir, 'slow', { ackTimeoutMs: 2_000 });
    await slow.entered;
    // Well past the acknowledgement wait: only the long timeout applies now.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    slow.answer({ requeued: 3 });

    expect(await asked).toEqual({ requeued: 3 });
  } finally {
    await lock.release();
  }
});

test('When the holder answers a request, then the ask gets the answer, and a refusal as an error', async () => {
  const lock = await acquireInstanceLock({ dir, command: 'plain holder' });
  try {
    lock.handle('ping', async () => 'pong');
    lock.handle('fail', async () => {
      throw new Error('not today');
    });

    expect(await askHolder(dir, 'ping')).toBe('pong');
    await expect(askHolder(dir, 'fail')).rejects.toThrow('not today');
  } finally {
    await lock.release();
  }
});
