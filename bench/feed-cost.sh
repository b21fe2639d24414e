#!/usr/bin/env bash
# `npm run bench:feed-cost`: what the change feed and the stats cost the write path (issue 10's
# "ingest within 10 % of the same code without them"). Builds the baseline from the committed
# HEAD with bench/baselines/without-feed-and-stats.patch applied — no rollup delta, no
# message_status, no NOTIFY per batch — in a temporary worktree, then runs bench:compare
# (alternating runs on one PostgreSQL) against this checkout. If the patch no longer applies,
# the write path changed: update the patch so it removes the same three things.
set -euo pipefail
root="$(git rev-parse --show-toplevel)"
work="$(mktemp -d)"
baseline="$work/without-feed-and-stats"
cleanup() { git -C "$root" worktree remove --force "$baseline" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
git -C "$root" worktree add --quiet --detach "$baseline" HEAD
git -C "$baseline" apply "$root/bench/baselines/without-feed-and-stats.patch"
ln -s "$root/node_modules" "$baseline/node_modules"
BENCH_BASELINE_DIR="$baseline" BENCH_RUNS="${BENCH_RUNS:-3}" npx tsx "$root/bench/compare-ingest.ts"
