import type { Registry } from 'prom-client';
import { namedProjects } from '../config';
import type { Config } from '../config';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { unboundSigningKeys } from '../signalwire/signing';
import type { SearchList } from './relay-dns';
import { createRelayMetrics } from './relay-metrics';
import { createRelayTransport } from './relay-transport';
import type { LookupFunction } from './safe-agent';
import { createRelayWorker } from './relay-worker';
import type { RelayWorker, RelayWorkerOptions } from './relay-worker';

/** The relay as main.ts (and tests) build it from the configuration (DESIGN §10). */
export function createRelay(deps: {
  config: Config;
  db: Db;
  logger: Logger;
  registry?: Registry;
  /** Tests: DNS answers. */
  lookup?: LookupFunction;
  /** Tests: name servers to ask instead of resolv.conf's. */
  dnsServers?: readonly string[];
  /** Tests: a hosts file instead of /etc/hosts. */
  hostsFile?: string;
  /** Tests: a search list and ndots instead of resolv.conf's. */
  dnsSearch?: SearchList;
  tuning?: Pick<
    RelayWorkerOptions,
    'pollMs' | 'concurrency' | 'statsEveryMs' | 'expireEveryMs' | 'breaker' | 'leaseSlackMs'
  >;
  paused?: () => boolean;
}): RelayWorker {
  const { config } = deps;
  const logger = deps.logger.child({ component: 'relay' });
  const projects = namedProjects(config);
  warnOfUnboundKeys(logger, config, projects);
  const worker = createRelayWorker({
    db: deps.db,
    logger,
    transport: createRelayTransport({
      timeoutMs: config.relayTimeoutMs,
      maxSockets: config.relayHostConcurrency,
      allowedNetworks: config.relayAllowedNetworks,
      allowHttp: config.relayAllowHttp,
      ...(deps.lookup && { lookup: deps.lookup }),
      ...(deps.dnsServers && { dnsServers: deps.dnsServers }),
      ...(deps.hostsFile && { hostsFile: deps.hostsFile }),
      ...(deps.dnsSearch && { dnsSearch: deps.dnsSearch }),
    }),
    signingKeys: config.signingKeys,
    ...(config.signingKeyProjects && { signingKeyProjects: config.signingKeyProjects }),
    namedProjects: projects,
    retrySchedule: config.relayRetrySchedule,
    hostConcurrency: config.relayHostConcurrency,
    timeoutMs: config.relayTimeoutMs,
    storeBody: config.storeBody,
    ...(deps.paused && { paused: deps.paused }),
    ...deps.tuning,
  });
  if (deps.registry) worker.setMetrics(createRelayMetrics(deps.registry, worker.stats));
  return worker;
}

/**
 * More than one key bound to none, and several projects named or none: a relay no signature chose a key
 * for is signed with the one its project's callbacks last verified under, or goes unsigned
 * (signing.ts relaySigningKey). Binding each key to its project says which is whose. Names
 * the projects, never a key.
 */
function warnOfUnboundKeys(
  logger: Logger,
  config: Pick<Config, 'signingKeys' | 'signingKeyProjects'>,
  projects: ReadonlySet<string>,
): void {
  const unbound = unboundSigningKeys(config.signingKeys, config.signingKeyProjects).length;
  if (unbound <= 1 || projects.size === 1) return;
  if (projects.size === 0) {
    // Nothing tells a rotation (one project's old and new key) from several projects' keys:
    // DESIGN §10's rule stands (the first key), and the operator is told how to say which.
    logger.warn(
      { unbound_keys: unbound },
      'more than one signing key is listed and no project is named: if they are several ' +
        "projects' keys, bind each to its project in SIGNALWIRE_SIGNING_KEYS " +
        '(project_id:PSK_…) — until then a relay of a project whose callbacks have not lately ' +
        'verified under its own key is signed with the first key, which another project can ' +
        'then have sign what its token admits',
    );
    return;
  }
  logger.warn(
    { projects: [...projects].sort(), unbound_keys: unbound },
    'several projects are configured and more than one signing key is bound to none: bind each ' +
      'key to its project in SIGNALWIRE_SIGNING_KEYS (project_id:PSK_…); until then a relay ' +
      'no signature chose a key for is signed with the key its project last verified under, ' +
      'or goes unsigned',
  );
}
