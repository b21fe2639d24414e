import fc from 'fast-check';
import { createReadGate } from '../../src/db/read-gate';
import { AppError } from '../../src/errors';

/**
 * The read gate's invariants over arbitrary interleavings of callers asking, reads finishing,
 * callers going away and time passing: never more than `concurrency` turns held, a read started
 * only while its caller holds less than its share (concurrency − 1, at least 1, while another
 * caller is reading, waiting or asked within RECENT_MS; every turn otherwise), no turn left idle
 * while a caller below its share waits, each caller's reads started in the order it asked, and
 * every read eventually run, or refused once it waited `maxWaitMs`, or skipped when its caller
 * went.
 */

const CALLERS = ['token:a', 'token:b', 'token:c', undefined] as const;
const MAX_WAIT_MS = 1_000;
const RECENT_MS = 1_500;

type Step =
  | { kind: 'ask'; caller: (typeof CALLERS)[number]; gone: boolean }
  | { kind: 'finish'; pick: number }
  | { kind: 'wait'; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('ask' as const),
      caller: fc.constantFrom(...CALLERS),
      gone: fc.boolean(),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('finish' as const), pick: fc.nat() }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('wait' as const),
      ms: fc.integer({ min: 0, max: MAX_WAIT_MS }),
    }),
    weight: 1,
  },
);

interface Asked {
  id: number;
  caller: string | undefined;
  gone: boolean;
  started: boolean;
  finish?: () => void;
  ended?: boolean;
  outcome?: 'served' | 'refused' | 'skipped';
}

// Waiting reads are refused on timers: fake ones, moved on by the steps. setImmediate stays
// real, to let the gate's promise callbacks run.
beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

const settle = () => new Promise((resolve) => setImmediate(resolve));

async function simulate(concurrency: number, maxWaitMs: number | undefined, steps: Step[]) {
  // Date.now is the fake timers' clock: the gate's recency and its timers move together.
  const gate = createReadGate({
    concurrency,
    maxWaitMs,
    recentMs: RECENT_MS,
    clock: () => Date.now(),
  });
  const asked: Asked[] = [];
  const startOrder: Asked[] = [];
  const lastAsked = new Map<string, number>();
  const overShare: Array<{ id: number; holds: number }> = [];
  // Ended when told to finish: the gate gives its turn back before the answer's callbacks run.
  const running = () => asked.filter((read) => read.started && !read.ended);
  const waitingOf = (caller: string | undefined) =>
    asked.filter((read) => read.caller === caller && !read.started && read.outcome === undefined);
  /** The turns `caller` may hold now, by the rule the gate documents. */
  const shareOf = (caller: string | undefined): number => {
    if (caller === undefined) return concurrency;
    const othersAbout = CALLERS.some(
      (other) =>
        other !== undefined &&
        other !== caller &&
        (running().some((read) => read.caller === other) ||
          waitingOf(other).length > 0 ||
          Date.now() - (lastAsked.get(other) ?? -Infinity) < RECENT_MS),
    );
    return othersAbout ? Math.max(1, concurrency - 1) : concurrency;
  };

  const check = (): void => {
    expect(overShare).toEqual([]);
    const now = running();
    expect(gate.running).toBe(now.length);
    expect(gate.running).toBeLessThanOrEqual(concurrency);
    expect(gate.waiting).toBe(asked.filter((r) => !r.started && !r.outcome).length);
    for (const caller of CALLERS) {
      const holds = now.filter((read) => read.caller === caller).length;
      // No turn stays idle while a caller below its share waits for one (a caller may hold
      // more than its share now: its reads started before another caller came about).
      if (gate.running < concurrency && waitingOf(caller).length > 0) {
        expect(holds).toBeGreaterThanOrEqual(shareOf(caller));
      }
    }
  };

  const ask = async (caller: string | undefined, gone: boolean): Promise<void> => {
    const read: Asked = { id: asked.length, caller, gone, started: false };
    asked.push(read);
    if (caller !== undefined) lastAsked.set(caller, Date.now());
    gate
      .run(
        () => {
          // Started only below its caller's share, counted without itself.
          const holds = running().filter((other) => other.caller === caller).length;
          if (holds >= shareOf(caller)) overShare.push({ id: read.id, holds });
          read.started = true;
          startOrder.push(read);
          return new Promise<void>(
            (resolve) =>
              (read.finish = () => {
                read.ended = true;
                resolve();
              }),
          );
        },
        () => read.gone,
        caller,
      )
      .then(
        () => (read.outcome = 'served'),
        (error: unknown) => {
          expect(error).toBeInstanceOf(AppError);
          const { status } = error as AppError;
          expect(read.started).toBe(false);
          // Skipped (499) only when its caller went away; otherwise refused for waiting (503).
          expect(status).toBe(read.gone && status === 499 ? 499 : 503);
          read.outcome = status === 499 ? 'skipped' : 'refused';
        },
      );
    await settle();
  };

  for (const next of steps) {
    if (next.kind === 'ask') await ask(next.caller, next.gone);
    else if (next.kind === 'finish') {
      const now = running();
      if (now.length > 0) now[next.pick % now.length]!.finish!();
      await settle();
    } else {
      jest.advanceTimersByTime(next.ms);
      await settle();
    }
    check();
  }

  // Then every read is answered: the running ones finish, and the waiting ones get their
  // turns or (when the gate bounds waiting) are refused once they waited too long.
  for (let round = 0; round <= asked.length; round++) {
    for (const read of running()) read.finish!();
    await settle();
    check();
  }
  if (maxWaitMs !== undefined) {
    jest.advanceTimersByTime(maxWaitMs);
    await settle();
  }
  expect(asked.filter((read) => read.outcome === undefined)).toEqual([]);
  expect([gate.running, gate.waiting]).toEqual([0, 0]);
  for (const read of asked) {
    if (read.outcome === 'skipped') expect(read.gone).toBe(true);
    if (maxWaitMs === undefined && !read.gone) expect(read.outcome).toBe('served');
  }
  // Each caller's reads started in the order it asked for them.
  for (const caller of CALLERS) {
    const ids = startOrder.filter((read) => read.caller === caller).map((read) => read.id);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
  }
}

test('When callers ask, reads finish, callers go away and time passes in any order, then the gate keeps its turns, shares, order and answers', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }),
      fc.option(fc.constant(MAX_WAIT_MS), { nil: undefined }),
      fc.array(step, { maxLength: 80 }),
      async (concurrency, maxWaitMs, steps) => simulate(concurrency, maxWaitMs, steps),
    ),
    {
      numRuns: 300,
      examples: [
        // A caller held to its share while another was about, then alone: it takes the free
        // turn once the other has been quiet for RECENT_MS, with no read ending meanwhile.
        [
          2,
          undefined,
          [
            { kind: 'ask', caller: 'token:b', gone: false },
            { kind: 'ask', caller: 'token:a', gone: false },
            { kind: 'ask', caller: 'token:a', gone: false },
            { kind: 'finish', pick: 0 },
            { kind: 'wait', ms: 1_000 },
            { kind: 'wait', ms: 1_000 },
          ],
        ],
      ],
    },
  );
});
