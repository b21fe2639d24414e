import { createReadGate } from '../../src/db/read-gate';

/** A read that runs until it is told to finish, recording that it started. */
function heldRead(started: string[], name: string) {
  let finish!: () => void;
  const done = new Promise<string>((resolve) => (finish = () => resolve(name)));
  return {
    read: () => {
      started.push(name);
      return done;
    },
    finish: () => finish(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

afterEach(() => jest.useRealTimers());

test('When one caller asks for more reads than there are turns, then alone it holds them all; once another caller asks, that one gets the next turn and one turn is kept for it while it is about', async () => {
  // The gate's timers and its clock move together (setImmediate stays real for tick()).
  jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
  const gate = createReadGate({
    concurrency: 3,
    maxWaitMs: 100_000,
    recentMs: 60_000,
    clock: () => Date.now(),
  });
  const started: string[] = [];
  const a = ['a1', 'a2', 'a3', 'a4', 'a5'].map((name) => heldRead(started, name));
  const answers = a.slice(0, 4).map(({ read }) => gate.run(read, undefined, 'token:a'));
  await tick();
  // Alone (most deployments have one dashboard), a caller may use every turn.
  expect(started).toEqual(['a1', 'a2', 'a3']);
  expect([gate.running, gate.waiting]).toEqual([3, 1]);
  const b = heldRead(started, 'b1');
  answers.push(gate.run(b.read, undefined, 'token:b'));
  await tick();
  expect(started).toEqual(['a1', 'a2', 'a3']);
  // The next turn is B's, not A's waiting read's.
  a[0]!.finish();
  await tick();
  expect(started).toEqual(['a1', 'a2', 'a3', 'b1']);
  // B's turn, given back, stays free for B's next read while B asked within recentMs.
  b.finish();
  await tick();
  expect(started).toEqual(['a1', 'a2', 'a3', 'b1']);
  // A read of A's ending frees a turn A may take: it holds one less than all.
  a[1]!.finish();
  await tick();
  expect(started).toEqual(['a1', 'a2', 'a3', 'b1', 'a4']);
  answers.push(gate.run(a[4]!.read, undefined, 'token:a'));
  await tick();
  expect([gate.running, gate.waiting]).toEqual([2, 1]);
  // B quiet for recentMs: A takes every turn again, without waiting for a read to end.
  jest.advanceTimersByTime(59_999);
  await tick();
  expect(started).toEqual(['a1', 'a2', 'a3', 'b1', 'a4']);
  jest.advanceTimersByTime(1);
  await tick();
  expect(started).toEqual(['a1', 'a2', 'a3', 'b1', 'a4', 'a5']);
  for (const { finish } of a) finish();
  await expect(Promise.all(answers)).resolves.toEqual(['a1', 'a2', 'a3', 'a4', 'b1', 'a5']);
  expect([gate.running, gate.waiting]).toEqual([0, 0]);
});

test('When callers wait for the one turn, then they are served by turns, each in the order it asked', async () => {
  const gate = createReadGate({ concurrency: 1, maxWaitMs: 10_000 });
  const started: string[] = [];
  const names = ['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'c1'];
  const reads = new Map(names.map((name) => [name, heldRead(started, name)]));
  const answers = names.map((name) =>
    gate.run(reads.get(name)!.read, undefined, `token:${name[0]}`),
  );
  // Each read, once started, finishes: the turn passes on.
  for (let i = 0; i < names.length; i++) {
    await tick();
    reads.get(started.at(-1)!)!.finish();
  }
  await Promise.all(answers);
  // A's waiting reads do not keep B and C waiting until all of A's are done.
  expect(started).toEqual(['a1', 'a2', 'b1', 'c1', 'a3', 'b2', 'a4']);
});

test('When reads name no caller, then they keep one line in order and may take every turn, as before callers were told apart', async () => {
  const gate = createReadGate({ concurrency: 2, maxWaitMs: 10_000 });
  const started: string[] = [];
  const reads = ['x', 'y', 'z'].map((name) => heldRead(started, name));
  const answers = reads.map(({ read }) => gate.run(read));
  await tick();
  expect(started).toEqual(['x', 'y']);
  reads[0]!.finish();
  await tick();
  expect(started).toEqual(['x', 'y', 'z']);
  reads[1]!.finish();
  reads[2]!.finish();
  await expect(Promise.all(answers)).resolves.toEqual(['x', 'y', 'z']);
});
