import { createLogBudget } from '../../src/http/log-budget';
import { createLogger } from '../../src/logger';

/** The budget of log lines anonymous clients can cause (src/http/log-budget.ts). */

function budgetWithClock(perMinute: number) {
  const lines: Array<{ msg: string; left_out?: Record<string, number> }> = [];
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line)),
  });
  let now = 1_000_000;
  const budget = createLogBudget(logger, { perMinute, now: () => now });
  return { budget, lines, advance: (ms: number) => (now += ms) };
}

test('When a kind passes its lines for the minute, then the rest are left out, other kinds still allowed, and the next minute says how many of each were left out', () => {
  const { budget, lines, advance } = budgetWithClock(3);
  const answers = Array.from({ length: 5 }, () => budget.allows('status 429'));
  expect(answers).toEqual([true, true, true, false, false]);
  expect(budget.allows('status 404')).toBe(true);
  expect(lines).toEqual([]);

  advance(60_000);
  expect(budget.allows('status 429')).toBe(true);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ left_out: { 'status 429': 2 } });
});

test('When nothing comes after the lines left out, then the summary is still written at the minute’s end', () => {
  jest.useFakeTimers();
  try {
    const { budget, lines } = budgetWithClock(1);
    budget.allows('callback refused: mismatch');
    budget.allows('callback refused: mismatch');
    expect(lines).toEqual([]);
    jest.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ left_out: { 'callback refused: mismatch': 1 } });
  } finally {
    jest.useRealTimers();
  }
});

test('When the wall clock steps back an hour, then the minute still ends a minute later (the budget keeps monotonic time)', () => {
  jest.useFakeTimers();
  try {
    const logger = createLogger('silent');
    const budget = createLogBudget(logger, { perMinute: 1 });
    expect(budget.allows('status 429')).toBe(true);
    expect(budget.allows('status 429')).toBe(false);
    jest.setSystemTime(Date.now() - 3_600_000);
    jest.advanceTimersByTime(61_000);
    expect(budget.allows('status 429')).toBe(true);
  } finally {
    jest.useRealTimers();
  }
});
