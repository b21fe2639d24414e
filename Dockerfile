# syntax=docker/dockerfile:1
#
# sw-status container image.
#
#   docker build -t sw-status:0.1.0 .
#
# Database migrations are NOT applied on start in production: run them from this image before
# rolling out a new version. The migration CLI needs only DATABASE_URL:
#
#   docker run --rm -e DATABASE_URL=postgres://user:password@host:5432/sw_status \
#     sw-status:0.1.0 node dist/db/migrate-cli.js
#
# In Kubernetes, k8s/migrate/job.yaml runs the same command with DATABASE_URL from the
# service's Secret, one Job per release, before the release's pods take traffic.
#
# Listeners: 8080 public (/callbacks/*, /healthz, /readyz: the only one to put behind the
# Ingress/LB) and 8081 internal (send proxy, /v1/*, /metrics, /openapi.json, /docs and the
# status page at /: cluster-only).

# One pin for every stage: Node.js 24.20.0 on Debian 12 (bookworm), by the digest of the
# image's multi-platform index, so a rebuild gets the same base until the pin is changed on
# purpose. .ci/run tests on the same Node.js version (test/deploy/dockerfile.test.ts checks).
# To move it: `docker buildx imagetools inspect node:24.X.Y-bookworm-slim` gives the digest.
FROM node:24.20.0-bookworm-slim@sha256:ba849c60be29959425b8734d57b8b4b7d56f98edd9504c9af091d5281095a71e AS base
WORKDIR /app

# --- build: full dependency tree (typescript lives in devDependencies) -> dist/ -------------
FROM base AS build
COPY package.json package-lock.json ./
# npm ci honours package.json's allowScripts and overrides; the cache mount keeps re-builds fast.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- prod-deps: production dependencies only, installed apart from the build tree ----------
FROM base AS prod-deps
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund

# --- runtime --------------------------------------------------------------------------------
FROM base AS runtime
# node and nothing else: no npm, npx, corepack or yarn (less to patch, and nothing in the
# running container that installs packages). Their absence is harmless where a path is missing.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
    /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
# SPOOL_DIR: the default (.data/spool under /app) is not writable by the service user.
# UV_THREADPOOL_SIZE: libuv's pool (4 threads by default) runs getaddrinfo, file I/O and crypto,
# none of them cancellable. Relays never use it to resolve (c-ares, src/relay/relay-dns.ts); the
# margin keeps the spool's files going while lookups by name (SignalWire, PostgreSQL) wait on a
# slow name server.
ENV NODE_ENV=production \
    SPOOL_DIR=/var/lib/sw-status/spool \
    UV_THREADPOOL_SIZE=8

# Application files stay owned by root (read-only for the service user). The outage spool is
# the only path the process writes; Kubernetes mounts a volume over it (the root filesystem is
# read-only there), for plain `docker run` it is a directory the service user owns.
RUN mkdir -p /var/lib/sw-status/spool && chown -R node:node /var/lib/sw-status

# Files from the build context keep the checkout's modes: a build host with umask 027 (CIS
# hardening) checks out 0640/0750, and the service user (neither owner nor group) could read
# neither package.json nor the migrations. Readable by everyone, whatever the checkout.
COPY --chmod=0644 package.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --chmod=0755 db ./db

# The image's `node` user, given numerically so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 8080 8081

# Liveness of the public listener. Node's built-in fetch: the slim image has no curl/wget.
# Kubernetes ignores HEALTHCHECK and uses the probes in k8s/app/statefulset.yaml instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node runs as PID 1 and handles SIGTERM itself (readiness 503, drain, exit 0), from the first
# line of start-up on (PID 1 ignores a signal it has no handler for). Exec form, no npm/shell
# wrapper, so the signal reaches node.
CMD ["node", "dist/main.js"]
