import { createHostLimiter } from '../../src/relay/circuit-breaker';
import { nextClaim } from '../../src/relay/claim-room';
import type { HeldJobs } from '../../src/relay/claim-room';

/** What the relay worker claims next (src/relay/claim-room.ts): pure, no I/O. */

const NOW = 1_000_000;

function held(overrides: Partial<HeldJobs> = {}): HeldJobs {
  return {
    now: NOW,
    concurrency: 64,
    heldRoomMs: 1_000,
    maxHeld: 1_024,
    lastClaimAt: 0,
    inFlight: [],
    waiting: [],
    byHost: new Map(),
    circuits: new Map(),
    ...overrides,
  };
}

/** `count` jobs of `host` waiting since `ago` ms. */
const waitingSince = (ago: number, count: number, host = 'https://busy') =>
  Array.from({ length: count }, () => ({ claimedAt: NOW - ago, host }));

/** `count` requests in flight since `ago` ms. */
const inFlightSince = (ago: number, count: number) =>
  Array.from({ length: count }, () => ({ since: NOW - ago }));

test('When nothing is held, then the whole room is claimed, any host up to all of it', () => {
  expect(nextClaim(held())).toEqual({ limit: 64, perHost: 64, caps: new Map() });
});

test('When a busy host’s fresh jobs fill more than half the room, then nothing is claimed until half is free', () => {
  const busy = (waiting: number) => ({
    inFlight: inFlightSince(10, 4),
    waiting: waitingSince(10, waiting),
    byHost: new Map([['https://busy', 4 + waiting]]),
  });
  expect(nextClaim(held(busy(36)))).toBeNull();
  // 32 free: a bulk claim, the busy host topped up to 64 at most.
  expect(nextClaim(held(busy(28)))).toEqual({
    limit: 32,
    perHost: 64,
    caps: new Map([['https://busy', 32]]),
  });
});

test('When a slow host’s jobs have waited longer than heldRoomMs, then they no longer hold room, and claims come once per heldRoomMs', () => {
  const slow = { inFlight: inFlightSince(10, 4), byHost: new Map([['https://slow', 64]]) };
  const stale = waitingSince(1_500, 60, 'https://slow');
  const claim = nextClaim(held({ ...slow, waiting: stale, lastClaimAt: NOW - 1_500 }));
  // Room for other hosts; none for the slow one, which holds all it may.
  expect(claim).toEqual({ limit: 60, perHost: 64, caps: new Map([['https://slow', 0]]) });
  expect(nextClaim(held({ ...slow, waiting: stale, lastClaimAt: NOW - 200 }))).toBeNull();
});

test('When sixteen slow hosts’ requests have been open longer than heldRoomMs, then they no longer hold room, and claims are not slowed down by them', () => {
  const byHost = new Map(Array.from({ length: 16 }, (_, i) => [`https://slow${i}`, 4]));
  const slow = { inFlight: inFlightSince(1_500, 64), byHost };
  // Requests just begun still hold it.
  expect(nextClaim(held({ ...slow, inFlight: inFlightSince(500, 64) }))).toBeNull();
  const claim = nextClaim(held({ ...slow, lastClaimAt: NOW - 1_500 }));
  expect(claim).toMatchObject({ limit: 64, perHost: 64 });
  // Each slow host may still take more, up to the jobs a host may hold: only its slots limit it.
  expect(claim?.caps.get('https://slow0')).toBe(60);
  // Nothing waits for a slot: one claim 200 ms after another is not held back.
  expect(nextClaim(held({ ...slow, lastClaimAt: NOW - 200 }))).toMatchObject({ limit: 64 });
});

test('When a host has a job that waited past heldRoomMs for its slot, then the next claim gives that host none', () => {
  const claim = nextClaim(
    held({
      inFlight: inFlightSince(1_500, 4),
      waiting: [...waitingSince(1_500, 2, 'https://slow'), ...waitingSince(10, 1, 'https://quick')],
      byHost: new Map([
        ['https://slow', 6],
        ['https://quick', 1],
      ]),
      lastClaimAt: NOW - 1_500,
    }),
  );
  expect(claim?.caps).toEqual(
    new Map([
      ['https://slow', 0],
      ['https://quick', 63],
    ]),
  );
});

test('When stale jobs reach maxHeld, then nothing more is claimed however stale they are', () => {
  const stale = { inFlight: inFlightSince(5_000, 1_000), lastClaimAt: NOW - 5_000 };
  expect(nextClaim(held({ ...stale, maxHeld: 1_024 }))).toBeNull();
  expect(nextClaim(held({ ...stale, maxHeld: 1_064 }))).toMatchObject({ limit: 64 });
});

test('When a host’s circuit is open or half-open, then a claim gives it none, or its one trial', () => {
  const circuits = new Map([
    ['https://open', 'open' as const],
    ['https://trial', 'half-open' as const],
    ['https://trying', 'half-open' as const],
  ]);
  const claim = nextClaim(held({ circuits, byHost: new Map([['https://trying', 1]]) }));
  expect(claim?.caps).toEqual(
    new Map([
      ['https://trying', 0],
      ['https://open', 0],
      ['https://trial', 1],
    ]),
  );
});

test('When hosts fail, then the limiter lists the open and half-open ones, and forgets them once they recover', () => {
  const limiter = createHostLimiter({
    hostConcurrency: 4,
    failureThreshold: 2,
    openMs: 1_000,
    maxOpenMs: 10_000,
  });
  for (const host of ['https://a', 'https://a', 'https://b']) {
    limiter.started(host);
    limiter.finished(host, true, 0);
  }
  expect(limiter.circuits(500)).toEqual(new Map([['https://a', 'open']]));
  expect(limiter.circuits(1_500)).toEqual(new Map([['https://a', 'half-open']]));
  limiter.started('https://a');
  limiter.finished('https://a', false, 1_500);
  expect(limiter.circuits(1_500)).toEqual(new Map());
});

test('When a failing host is sent nothing for maxOpenMs, then the limiter forgets it; a host still being tried keeps its failures', () => {
  const limiter = createHostLimiter({
    hostConcurrency: 4,
    failureThreshold: 2,
    openMs: 1_000,
    maxOpenMs: 10_000,
  });
  const fail = (host: string, now: number): void => {
    limiter.started(host);
    limiter.finished(host, true, now);
  };
  // A retired app: opened at 0 (until 1 000), half-open from then on, never tried again.
  fail('https://retired', 0);
  fail('https://retired', 0);
  // An app failing once in a while: its streak must survive a gap between its requests.
  fail('https://flaky', 0);
  expect(limiter.circuits(9_000)).toEqual(new Map([['https://retired', 'half-open']]));
  fail('https://flaky', 9_500);
  expect(limiter.state('https://flaky', 9_500)).toBe('open');
  expect(limiter.circuits(11_001)).toEqual(new Map([['https://flaky', 'half-open']]));
  expect(limiter.state('https://retired', 11_001)).toBe('closed');
  // Forgotten, it starts again from no failures: one more is not enough to open it.
  fail('https://retired', 12_000);
  expect(limiter.state('https://retired', 12_000)).toBe('closed');
});
