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
# In Kubernetes, k8s/migrate-job.yaml runs the same command with the service's ConfigMap and
# Secret.
#
# Listeners: 8080 public (/callbacks/*, /healthz, /readyz: the only one to put behind the
# Ingress/LB) and 8081 internal (send proxy, /v1/*, /metrics, /openapi.json: cluster-only).

# One pin for every stage. For reproducible builds pin the digest too:
# node:24-bookworm-slim@sha256:<digest>
FROM node:24-bookworm-slim AS base
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
# SPOOL_DIR: the default (.data/spool under /app) is not writable by the service user.
ENV NODE_ENV=production \
    SPOOL_DIR=/var/lib/sw-status/spool

# Application files stay owned by root (read-only for the service user). The outage spool is
# the only path the process writes; Kubernetes mounts a volume over it (the root filesystem is
# read-only there), for plain `docker run` it is a directory the service user owns.
RUN mkdir -p /var/lib/sw-status/spool && chown -R node:node /var/lib/sw-status

COPY package.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY db ./db

# The image's `node` user, given numerically so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 8080 8081

# Liveness of the public listener. Node's built-in fetch: the slim image has no curl/wget.
# Kubernetes ignores HEALTHCHECK and uses the probes in k8s/deployment.yaml instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node runs as PID 1 and handles SIGTERM itself (readiness 503, drain, exit 0).
# Exec form, no npm/shell wrapper, so the signal reaches node.
CMD ["node", "dist/main.js"]
