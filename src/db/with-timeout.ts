/**
 * `work`, or an ETIMEDOUT error once `ms` have passed: a database call that stopped answering
 * counts as a lost connection (src/db/database-unavailable.ts). The abandoned call is not
 * cancelled: it ends by itself (the pool's timeouts), and may still take effect — a late write
 * may commit — so callers treat the timeout as "outcome unknown". Its later failure is
 * swallowed: nothing awaits it any more.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, what = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(timedOut(`${what} within ${ms} ms`)), ms);
  });
  work.catch(() => undefined);
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/** The error of work that ran out of its time: ETIMEDOUT, as a lost connection's is taken. */
export function timedOut(message: string): Error {
  return Object.assign(new Error(message), { code: 'ETIMEDOUT' });
}
