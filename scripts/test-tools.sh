#!/usr/bin/env bash
# Run before `npm test` (package.json "pretest"): the status page's browser tests (test/page)
# drive Debian's chromium through playwright-core (no browser download), and the alert rules
# are checked with promtool from Debian's prometheus package (test/ops/prometheus-rules.test.ts).
# When they are missing and this runs as root with apt-get (a fresh machine, CI), they are
# installed here, so `npm ci && npm test` needs nothing done by hand. Otherwise the tests that
# need them fail with the command to run (or set SW_SKIP_BROWSER_TESTS=1 to skip them).
set -euo pipefail

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
promtool="${PROMTOOL_PATH:-/usr/bin/promtool}"
missing=()
# SW_SKIP_BROWSER_TESTS=1 skips the browser tests, not the alert rules' check: promtool is still
# installed.
[ -x "$chromium" ] || [ "${SW_SKIP_BROWSER_TESTS:-}" = 1 ] || missing+=(chromium)
[ -x "$promtool" ] || missing+=(prometheus)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "test tools: installing ${missing[*]} with apt-get (once)"
  # A failed install (no package source reachable) must not stop the rest of the suite: the
  # tests that need the tools then fail and say what is missing.
  if ! { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "test tools: installing ${missing[*]} failed; install with: apt-get install -y ${missing[*]}" >&2
  fi
else
  echo "test tools: ${missing[*]} missing; install with: sudo apt-get install -y ${missing[*]}" >&2
fi
