import { createReadGate } from '../../src/db/read-gate';
import { AppError } from '../../src/errors';

/** A read that runs until it is told to finish, recording that it started. */
function heldRead(started: string[], name: string) {
  let finish!: (value: string) => void;
  const done = new Promise<string>((resolve) => (finish = resolve));
  return {
    read: () => {
      started.push(name);
      return done;
    },
    finish: () => finish(name),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('When more reads are asked for than the gate lets through, then the rest wait and start in order as turns free', async () => {
  const gate = createReadGate({ concurrency: 2, maxWaitMs: 10_000 });
  const started: string[] = [];
  const reads = ['a', 'b', 'c', 'd'].map((name) => heldRead(started, name));
  const answers = reads.map(({ read }) => gate.run(read));
  await tick();
  expect(started).toEqual(['a', 'b']);
  reads[1]!.finish();
  await tick();
  expect(started).toEqual(['a', 'b', 'c']);
  reads[0]!.finish();
  reads[2]!.finish();
  await tick();
  expect(started).toEqual(['a', 'b', 'c', 'd']);
  reads[3]!.finish();
  await expect(Promise.all(answers)).resolves.toEqual(['a', 'b', 'c', 'd']);
});

test('When a read waits longer than maxWaitMs, then it is refused 503 with Retry-After and never runs, and the line moves on', async () => {
  const gate = createReadGate({ concurrency: 1, maxWaitMs: 50 });
  const started: string[] = [];
  const first = heldRead(started, 'first');
  const late = heldRead(started, 'late');
  const firstAnswer = gate.run(first.read);
  const refused = gate.run(late.read).catch((error: unknown) => error);
  const error = await refused;
  expect(error).toBeInstanceOf(AppError);
  expect(error).toMatchObject({
    status: 503,
    code: 'unavailable',
    headers: { 'Retry-After': '1' },
  });
  expect(started).toEqual(['first']);
  first.finish();
  await firstAnswer;
  // The refused read left no turn behind: the next one starts at once.
  const next = heldRead(started, 'next');
  const nextAnswer = gate.run(next.read);
  await tick();
  expect(started).toEqual(['first', 'next']);
  next.finish();
  await expect(nextAnswer).resolves.toBe('next');
});

test('When a waiting caller has gone away by its turn, then its read is not run and the turn passes to the next', async () => {
  const gate = createReadGate({ concurrency: 1, maxWaitMs: 10_000 });
  const started: string[] = [];
  const first = heldRead(started, 'first');
  const abandonedRead = heldRead(started, 'abandoned');
  const after = heldRead(started, 'after');
  const firstAnswer = gate.run(first.read);
  const abandoned = gate.run(abandonedRead.read, () => true).catch((error: unknown) => error);
  const afterAnswer = gate.run(after.read, () => false);
  first.finish();
  await firstAnswer;
  expect(await abandoned).toMatchObject({ status: 499 });
  await tick();
  expect(started).toEqual(['first', 'after']);
  after.finish();
  await expect(afterAnswer).resolves.toBe('after');
});

test('When a read fails, synchronously or not, then its turn is given back', async () => {
  const gate = createReadGate({ concurrency: 1, maxWaitMs: 10_000 });
  await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  await expect(
    gate.run(() => {
      throw new Error('thrown');
    }),
  ).rejects.toThrow('thrown');
  await expect(gate.run(() => Promise.resolve('ok'))).resolves.toBe('ok');
});
