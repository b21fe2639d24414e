import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client } from 'pg';
import { backendsWaitingOnLock } from '../helpers/lock-waits';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// The query API's reads share a few turns (src/db/read-gate.ts), and the rate limit counts a
// token's requests, not how long they hold a turn. A buggy dashboard (token A) whose reads are
// slow — here its lookups of single messages wait behind an operator's lock on status_events,
// standing for any costly read it keeps asking for — must not take every turn: another app's
// (token B) cheap list, of a table nobody locks, is answered at once, not refused 503 after the
// gate's 5 s wait.

const TOKEN_A = 'dashboard-token-aaaaaaaaaaaaaaaa';
const TOKEN_B = 'app-token-bbbbbbbbbbbbbbbbbbbbbbb';

let service: TestApp;
let server: Server;
let base: string;
beforeAll(async () => {
  // DATABASE_POOL_MAX 10 (the default): a quarter, 2 turns, for the query API's reads.
  service = await createTestApp({ API_TOKENS: `${TOKEN_A},${TOKEN_B}` });
  server = service.internalApp.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await service.close();
});

async function get(path: string, token: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${base}${path}`, {
    headers: { authorization: `Bearer ${token}`, connection: 'close' },
  });
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - started };
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 800 && !(await condition()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The query API's reads holding a turn or waiting for one (the metrics an operator sees). */
async function readsInGate(): Promise<number> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const count = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1]);
  return count('sw_status_query_reads_running') + count('sw_status_query_reads_waiting');
}

test("When one token keeps the query API busy with slow reads, then another token's cheap read is still answered promptly (not 503 after the gate's 5 s)", async () => {
  const { database } = service;
  // Baseline: token B's list alone. B has asked: for a minute it counts as about, and A holds
  // at most one turn less than all (a caller alone may take every turn: read-gate-callers).
  const baseline = await get('/v1/messages?limit=1', TOKEN_B);
  expect(baseline.status).toBe(200);
  expect(baseline.ms).toBeLessThan(5_000);

  const locker = new Client({ connectionString: database.url });
  locker.on('error', () => undefined);
  await locker.connect();
  let slow: Array<Promise<void>> = [];
  let stop = false;
  const aStatuses: number[] = [];
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE status_events IN ACCESS EXCLUSIVE MODE');
    // Token A: a dashboard with six tabs, each asking again as soon as it is answered (about
    // 70 requests a minute here, far within its 1,200).
    slow = Array.from({ length: 6 }, async () => {
      while (!stop) aStatuses.push((await get(`/v1/messages/${randomUUID()}`, TOKEN_A)).status);
    });
    // Every one of A's reads has reached the gate: those holding a turn wait on the lock (both
    // turns, were there no share per token), the others for a turn.
    await until(
      async () => (await backendsWaitingOnLock(database.url)) >= 1 && (await readsInGate()) === 6,
    );
    // Token B's lists read `messages` alone, which nothing locks: one, then another. Answered
    // while every read of A is still held by the lock: B did not wait for a turn of A's to end
    // (a read of A ends only at the statement timeout, 5 s after it started, then answered
    // before B's read could even begin), nor for the gate's 5 s. Not a bound on B's own time,
    // which a loaded machine stretches; `ms` is there to read in a failure.
    const answered = async (limit: number) => ({
      ...(await get(`/v1/messages?limit=${limit}`, TOKEN_B)),
      beforeAnyOfA: aStatuses.length === 0,
    });
    const first = await answered(1);
    const second = await answered(2);
    expect([first, second]).toEqual([
      { status: 200, beforeAnyOfA: true, ms: expect.any(Number) },
      { status: 200, beforeAnyOfA: true, ms: expect.any(Number) },
    ]);
  } finally {
    stop = true;
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
    await Promise.allSettled(slow);
  }
}, 60_000);
