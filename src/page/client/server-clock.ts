/**
 * The service's clock as the page learns it from each answer's `Date` header. The page's
 * windows ("the last 24 hours", "the last hour") end at now; taken from the browser's clock, a
 * laptop three minutes slow asked for windows that ended three minutes ago and showed neither
 * the latest minutes' throughput nor their messages in the counts, on a page that says "Live".
 *
 * `Date` holds whole seconds, and the service read its clock somewhere between the request
 * leaving and the answer arriving: an estimate is good to about a second plus half the round
 * trip. The offset moves only when an estimate differs from it by more than that, so that the
 * windows (minute-aligned, revalidated by ETag) do not jitter between two answers.
 */
export interface ServerClock {
  /** What the service's clock reads now, as Date.now() would. */
  now(): number;
  /** One answer's `Date` header, with when its request left and its answer came (browser's clock). */
  observe(dateHeader: string | null, sentAt: number, answeredAt: number): void;
  /** Sends one request and learns from its answer. */
  timed(send: () => Promise<Response>): Promise<Response>;
}

/** Below this, a difference is the estimate's own uncertainty, not a clock that is off. */
const NOISE_MS = 2_000;

export function createServerClock(browserNow: () => number = Date.now): ServerClock {
  let offsetMs = 0;
  return {
    now: () => browserNow() + offsetMs,
    async timed(send) {
      const sentAt = browserNow();
      const res = await send();
      this.observe(res.headers.get('Date'), sentAt, browserNow());
      return res;
    },
    observe(dateHeader, sentAt, answeredAt) {
      const stamped = dateHeader === null ? Number.NaN : Date.parse(dateHeader);
      if (!Number.isFinite(stamped)) return;
      // The middle of the second the header names, against the middle of the round trip.
      const estimate = stamped + 500 - (sentAt + answeredAt) / 2;
      const uncertainty = NOISE_MS + (answeredAt - sentAt) / 2;
      if (Math.abs(estimate - offsetMs) > uncertainty) offsetMs = Math.round(estimate);
    },
  };
}
