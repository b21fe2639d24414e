-- Relay destination hosts that are failing, as all replicas together see them (DESIGN §10: a
-- relay is retried on RELAY_RETRY_SCHEDULE, then it is dead — also while its host is paused).
--
-- Why: the circuit breaker (src/relay/circuit-breaker.ts) pauses a failing host on each replica,
-- and a paused host's relays are not claimed, so their schedule never ran out: an app that
-- stayed down kept every relay pending for as long as it was down, and no dead relay, metric or
-- alert said so. A replica's breaker cannot decide that for the others (one replica's open
-- circuit says nothing of another's deliveries); this table can. A row exists while every real
-- attempt at a host, from any replica, has failed since the last delivery to it: the first
-- host failure inserts it, later ones stamp it, a delivery removes it. The relay's expiry
-- (src/relay/relay.repository.ts, claimExpiredJobs) makes dead the relays whose schedule ran out
-- while their host kept failing.
--
-- Small: one row per host failing now (rows not stamped for a while are removed).
-- Additive: older releases neither read nor write it (oldest_reader unchanged); during a rolling
-- update their deliveries leave a row in place, which the next delivery by this release removes.
CREATE TABLE relay_hosts (
  host            text        PRIMARY KEY,   -- relay_jobs.host: scheme://host:port
  failing_since   timestamptz NOT NULL,      -- the first failure since the last delivery
  last_failure_at timestamptz NOT NULL,
  last_error      text                       -- what the last failure was (HTTP 503, timeout, …)
);
