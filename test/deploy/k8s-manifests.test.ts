import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { Kustomization as FluxKustomization } from '@kubernetes-models/flux-cd/kustomize.toolkit.fluxcd.io/v1/Kustomization';
import type { IKustomization as IFluxKustomization } from '@kubernetes-models/flux-cd/kustomize.toolkit.fluxcd.io/v1/Kustomization';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Job } from 'kubernetes-models/batch/v1/Job';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { Secret } from 'kubernetes-models/v1/Secret';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import type { IService } from 'kubernetes-models/v1/Service';
import { loadConfig } from '../../src/config';
import { configProblems } from '../helpers/config-problems';
import {
  K8S_DIR,
  ROOT,
  kustomizeUsable,
  kustomizeVersion,
  readObjects,
  render,
  renderEdited,
  renderOnTop,
} from './kustomize';
import type { K8sObject } from './kustomize';

/**
 * The Kubernetes manifests as a cluster receives them: k8s/ rendered by `kubectl kustomize`,
 * every object validated against its API schema (Kubernetes, Prometheus Operator and Flux
 * models) with unknown fields reported, and checked against the code they deploy: ports,
 * probes, environment, shutdown budget, connection budget, the per-release migration Job.
 */

const version = kustomizeVersion();
const usable = kustomizeUsable(version);

// CI (CI=true, .ci/run) must have kustomize; elsewhere a machine without kubectl skips these.
if (!usable && !process.env.CI) {
  console.warn(`kubectl with kustomize >= 5 not found (${version ?? 'none'}): k8s/ not rendered`);
}
test('When the tests run in CI, then kubectl with kustomize 5 renders the manifests', () => {
  if (process.env.CI) expect({ version, usable }).toEqual({ version, usable: true });
});
const rendered = usable ? describe : describe.skip;

// ---------------------------------------------------------------------------------------------
// Schema validation

interface Validatable {
  prototype: { validate(): void };
}

/** Every kind the manifests may contain; a new kind must be added here to be validated. */
const MODELS: Record<string, Validatable> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
  'kustomize.toolkit.fluxcd.io/v1/Kustomization': FluxKustomization,
};

/**
 * Validates `doc` with the model for its kind and returns the fields the schema does not
 * know. The generated validators ignore unknown properties (a misspelt `readinesProbe` passes,
 * and the API server would drop it with a mere warning), so the document is wrapped in a
 * proxy that records every property the validator reads: a property it never reads is not in
 * the schema.
 */
function validateStrict(model: Validatable, doc: object): string[] {
  const read = new Set<string>();
  const trace = (value: unknown, at: string): unknown => {
    if (value === null || typeof value !== 'object') return value;
    return new Proxy(value, {
      get(target, property, receiver) {
        const child: unknown = Reflect.get(target, property, receiver);
        if (typeof property !== 'string' || !Object.hasOwn(target, property)) return child;
        read.add(`${at}/${property}`);
        return trace(child, `${at}/${property}`);
      },
    });
  };
  // The models' validate() checks `this`; calling it on the proxy runs the same validator.
  model.prototype.validate.call(trace(doc, ''));

  const unknown: string[] = [];
  const walk = (value: unknown, at: string): void => {
    if (value === null || typeof value !== 'object') return;
    for (const [key, child] of Object.entries(value)) {
      if (!read.has(`${at}/${key}`)) unknown.push(`${at}/${key}`);
      else walk(child, `${at}/${key}`);
    }
  };
  walk(doc, '');
  return unknown;
}

function modelFor(object: K8sObject): Validatable {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!model) throw new Error(`no schema registered for ${object.apiVersion} ${object.kind}`);
  return model;
}

// ---------------------------------------------------------------------------------------------
// The builds

const ENTRY_POINTS = ['k8s', 'k8s/app', 'k8s/migrate'] as const;
const builds = usable
  ? {
      default: render(K8S_DIR),
      app: render(path.join(K8S_DIR, 'app')),
      migrate: render(path.join(K8S_DIR, 'migrate')),
      // The opt-in component enabled, as k8s/kustomization.yaml's commented line would.
      exampleSecret: renderOnTop({
        namespace: 'sw-status',
        components: ['components/example-secret'],
      }),
    }
  : undefined;
const flux = readdirSync(path.join(K8S_DIR, 'flux'))
  .filter((file) => /\.ya?ml$/.test(file))
  .flatMap((file) => readObjects(path.join(K8S_DIR, 'flux', file)));

function one<T>(objects: K8sObject[], kind: string, name?: string): T {
  const found = objects.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name === name),
  );
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  }
  // Every object passes the schema test below, so the document has the model's shape.
  return found[0] as T;
}

const defaults = loadConfig({});
const configSource = readFileSync(path.join(ROOT, 'src', 'config.ts'), 'utf8');
/** The variable names of the zod schema in src/config.ts (it is not exported). */
const configKeys = (() => {
  const body = /const EnvSchema = z\.object\(\{([\s\S]*?)\n\}\);/.exec(configSource)?.[1];
  if (!body) throw new Error('src/config.ts: EnvSchema = z.object({ ... }) not found');
  return new Set([...body.matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!));
})();
/** The variables src/config.ts refuses to default when NODE_ENV=production. */
const requiredInProduction = [...configSource.matchAll(/requireInProduction\(\s*'([A-Z_]+)'/g)].map(
  (m) => m[1]!,
);
/** Deployment decision: these are secrets and belong in the Secret only. */
const SECRET_VARIABLES = [
  'DATABASE_URL',
  'SIGNALWIRE_SIGNING_KEYS',
  'CALLBACK_TOKEN_SECRET',
  'API_TOKENS',
];
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** `sleep N` or the native sleep action, in seconds; 0 without a preStop sleep. */
function preStopSleepSeconds(c: IContainer): number {
  const preStop = c.lifecycle?.preStop;
  if (preStop?.sleep) return preStop.sleep.seconds;
  const command = preStop?.exec?.command ?? [];
  if (command[0] === 'sleep' && command[1] !== undefined) return Number(command[1]);
  return 0;
}

// ---------------------------------------------------------------------------------------------

rendered('Kubernetes manifests: every rendered object against its schema', () => {
  const all = builds
    ? [
        ...Object.entries(builds).flatMap(([build, objects]) =>
          objects.map((o) => [`${build}: ${o.kind}/${o.metadata.name}`, o] as const),
        ),
        ...flux.map((o) => [`k8s/flux: ${o.kind}/${o.metadata.name}`, o] as const),
      ]
    : [];

  test.each(all)(
    'When %s is validated, then it is valid with no unknown field',
    (_label, object) => {
      expect(validateStrict(modelFor(object), object)).toEqual([]);
    },
  );

  test('When a manifest has a wrongly typed field, then validation throws', () => {
    const broken = structuredClone(one<IStatefulSet>(builds!.default, 'StatefulSet'));
    broken.spec!.template.spec!.containers[0]!.ports![0]!.containerPort = 'eighty' as never;
    expect(() => new StatefulSet(broken).validate()).toThrow(/containerPort must be integer/);
  });

  test('When a manifest misspells a field, then it is reported as unknown', () => {
    const broken = structuredClone(one<IStatefulSet>(builds!.default, 'StatefulSet'));
    const c = broken.spec!.template.spec!.containers[0] as IContainer & Record<string, unknown>;
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
    expect(validateStrict(StatefulSet, broken)).toEqual([
      '/spec/template/spec/containers/0/readinesProbe',
    ]);
  });

  test('When the builds are compared, then k8s/ is exactly k8s/migrate, k8s/app and the namespace', () => {
    const names = (objects: K8sObject[]) =>
      objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(names(builds!.default)).toEqual(
      [...names(builds!.app), ...names(builds!.migrate), 'Namespace/sw-status'].sort(),
    );
    for (const object of builds!.default) {
      if (object.kind !== 'Namespace') expect(object.metadata.namespace).toBe('sw-status');
    }
  });
});

describe('Kubernetes manifests: the files behind the builds', () => {
  test('When a YAML file is in k8s/, then a kustomization lists it (kustomize ignores the rest)', () => {
    const unlisted: string[] = [];
    const visit = (dir: string): void => {
      const entries = readdirSync(dir);
      const kustomization = entries.includes('kustomization.yaml')
        ? (yaml.load(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
            resources?: string[];
          })
        : undefined;
      for (const entry of entries) {
        const full = path.join(dir, entry);
        if (statSync(full).isDirectory()) visit(full);
        else if (/\.ya?ml$/.test(entry) && entry !== 'kustomization.yaml') {
          if (!kustomization?.resources?.includes(entry))
            unlisted.push(path.relative(K8S_DIR, full));
        }
      }
    };
    visit(K8S_DIR);
    // k8s/flux holds objects for Flux itself, applied by hand in flux-system.
    expect(unlisted).toEqual(['flux/sw-status.yaml']);
  });

  test('When a ConfigMap or Secret value would read as a YAML 1.1 boolean, then it is quoted', () => {
    // js-yaml reads YAML 1.2, where `yes`/`on` are strings; kubectl reads YAML 1.1, where they
    // are booleans and the apply fails ("cannot unmarshal bool into ... string").
    const yaml11Bool = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/;
    for (const file of ['app/configmap.yaml', 'components/example-secret/secret.example.yaml']) {
      const lines = readFileSync(path.join(K8S_DIR, file), 'utf8').split('\n');
      const unquoted = lines.filter((line) => {
        const value = /^ {2}[A-Z][A-Z0-9_]*:\s*(\S.*)$/.exec(line)?.[1]?.trim();
        return value !== undefined && yaml11Bool.test(value);
      });
      expect(unquoted).toEqual([]);
    }
  });
});

rendered('Kubernetes manifests: configuration and secrets', () => {
  const configMap = () => one<IConfigMap>(builds!.default, 'ConfigMap', 'sw-status-config');
  const configData = () => configMap().data ?? {};
  const exampleSecret = () => one<ISecret>(builds!.exampleSecret, 'Secret');
  const secretData = () => ({ ...exampleSecret().stringData, ...exampleSecret().data });

  test('When k8s/ is applied, then it carries no Secret: the real one is never overwritten with placeholders', () => {
    expect(builds!.default.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect(builds!.app.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect(builds!.migrate.filter((o) => o.kind === 'Secret')).toEqual([]);
  });

  test('When the example-secret component is enabled, then it adds only the placeholder Secret the workloads read', () => {
    const added = builds!.exampleSecret.filter(
      (o) => !builds!.default.some((d) => d.kind === o.kind && d.metadata.name === o.metadata.name),
    );
    expect(added.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(['Secret/sw-status-secrets']);
    expect(exampleSecret().metadata?.namespace).toBe('sw-status');
    for (const value of Object.values(secretData())) expect(value).toContain('REPLACE_ME');
    expect(() => loadConfig({ ...configData(), ...secretData() })).toThrow(/Invalid configuration/);
  });

  test('When the ConfigMap or the Secret sets a variable, then src/config.ts reads it', () => {
    expect(configKeys.size).toBeGreaterThan(10);
    const unknown = [...Object.keys(configData()), ...Object.keys(secretData())].filter(
      (key) => !configKeys.has(key),
    );
    expect(unknown).toEqual([]);
  });

  test('When a variable is a secret, then it is in the Secret and never in the ConfigMap', () => {
    for (const name of SECRET_VARIABLES) {
      expect(Object.keys(secretData())).toContain(name);
      expect(Object.keys(configData())).not.toContain(name);
    }
  });

  test('When NODE_ENV=production requires a variable, then the ConfigMap or the Secret provides it', () => {
    expect(requiredInProduction.length).toBeGreaterThan(0);
    expect(configData().NODE_ENV).toBe('production');
    const provided = new Set([...Object.keys(configData()), ...Object.keys(secretData())]);
    expect(requiredInProduction.filter((name) => !provided.has(name))).toEqual([]);
  });

  const realSecrets = (): Record<string, string> => {
    const realValues: Record<string, string> = {
      DATABASE_URL: 'postgres://sw_status:password@db.internal:5432/sw_status',
      SIGNALWIRE_SIGNING_KEYS: 'PSK_0123456789abcdef0123456789',
      CALLBACK_TOKEN_SECRET: 'a-long-random-callback-token-secret',
      API_TOKENS: 'a-long-random-api-token',
    };
    return Object.fromEntries(
      Object.keys(secretData()).map((key) => [key, realValues[key] ?? 'x'.repeat(32)]),
    );
  };
  // README "Configure" step 2: the team's own public URL and space.
  const realUrls = {
    PUBLIC_BASE_URL: 'https://sw-status.acme.test',
    SIGNALWIRE_SPACE_URL: 'https://acme.signalwire.com',
  };

  test('When the Secret and ConfigMap placeholders are replaced by real values, then the production configuration loads', () => {
    const config = loadConfig({ ...configData(), ...realUrls, ...realSecrets() });
    expect(config.isProduction).toBe(true);
    expect(config.defaultsInForce).toEqual([]);
    expect(config.shutdownDrainMs).toBe(Number(configData().SHUTDOWN_DRAIN_MS));
  });

  test("When the ConfigMap's placeholder URLs are left in, then production refuses to start and names both (a ready pod would mint callback URLs SignalWire cannot reach)", () => {
    expect(configProblems({ ...configData(), ...realSecrets() })).toEqual([
      'PUBLIC_BASE_URL: still holds the replace-me placeholder of k8s/app/configmap.yaml',
      'SIGNALWIRE_SPACE_URL: still holds the replace-me placeholder of k8s/app/configmap.yaml',
    ]);
  });

  test('When HOST is not set by the ConfigMap, then the service default applies (IPv6-only clusters too)', () => {
    expect(configData().HOST).toBeUndefined();
  });
});

rendered('Kubernetes manifests: the StatefulSet', () => {
  const workload = () => one<IStatefulSet>(builds!.default, 'StatefulSet');
  const podSpec = () => workload().spec!.template.spec!;
  const container = () => podSpec().containers[0]!;
  const podLabels = () => workload().spec!.template.metadata!.labels!;
  const configData = () =>
    one<IConfigMap>(builds!.default, 'ConfigMap', 'sw-status-config').data ?? {};
  const hpa = () => one<IHorizontalPodAutoscaler>(builds!.default, 'HorizontalPodAutoscaler');
  const matches = (selector: Record<string, string> | undefined) =>
    !!selector &&
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([key, value]) => podLabels()[key] === value);
  const portOf = (port: number | string | undefined) =>
    typeof port === 'number'
      ? port
      : container().ports?.find((p) => p.name === port)?.containerPort;

  test('When the container ports are compared with src/config.ts, then they are its PORT and INTERNAL_PORT', () => {
    expect(portOf('public')).toBe(defaults.port);
    expect(portOf('internal')).toBe(defaults.internalPort);
    expect(Number(configData().PORT ?? defaults.port)).toBe(defaults.port);
    expect(Number(configData().INTERNAL_PORT ?? defaults.internalPort)).toBe(defaults.internalPort);
  });

  test('When the kubelet probes a pod, then liveness asks /healthz and readiness /readyz on the public port', () => {
    const c = container();
    expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(c.startupProbe?.httpGet?.path).toBe('/healthz');
    for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
      expect(portOf(probe?.httpGet?.port)).toBe(defaults.port);
    }
    // The readiness check (src/db/database-readiness.ts) answers within 1.5 s.
    expect(c.readinessProbe?.timeoutSeconds).toBeGreaterThanOrEqual(2);
  });

  test('When a pod starts on a large outage spool, then the startup probe waits five minutes before restarting it', () => {
    // The spool's events are counted before the pod listens (src/ingest/spool.ts); a restart
    // in the middle would never reach their replay.
    const probe = container().startupProbe;
    expect((probe?.periodSeconds ?? 10) * (probe?.failureThreshold ?? 3)).toBeGreaterThanOrEqual(
      300,
    );
  });

  test('When a pod is deleted, then preStop, the SHUTDOWN_GRACE_MS budget and a margin fit the grace period', () => {
    const data = configData();
    const graceMs = Number(data.SHUTDOWN_GRACE_MS);
    const drainMs = Number(data.SHUTDOWN_DRAIN_MS);
    const delayMs = Number(data.SHUTDOWN_DELAY_MS);
    const preStopMs = preStopSleepSeconds(container()) * 1000;
    const periodMs = (podSpec().terminationGracePeriodSeconds ?? 30) * 1000;
    expect([graceMs, drainMs, delayMs, preStopMs].every(Number.isFinite)).toBe(true);
    expect(preStopMs).toBeGreaterThan(0);
    // The kubelet sends SIGTERM after preStop and SIGKILL at the end of the period; the
    // process exits within SHUTDOWN_GRACE_MS of SIGTERM, and its drain is part of that.
    expect(preStopMs + graceMs + 5_000).toBeLessThanOrEqual(periodMs);
    expect(delayMs + drainMs).toBeLessThan(graceMs);
  });

  test('When the workload takes its environment, then it comes from the ConfigMap and the Secret', () => {
    const envFrom = container().envFrom ?? [];
    expect(envFrom.map((e) => e.configMapRef?.name).filter(Boolean)).toEqual(['sw-status-config']);
    expect(envFrom.map((e) => e.secretRef?.name).filter(Boolean)).toEqual(['sw-status-secrets']);
  });

  test('When callbacks are spooled, then SPOOL_DIR is each pod’s own persistent volume, kept on scale-down and delete', () => {
    const spoolDir = configData().SPOOL_DIR!;
    expect(path.isAbsolute(spoolDir)).toBe(true);
    const mount = container().volumeMounts?.find((m) => m.mountPath === spoolDir);
    expect(mount).toBeDefined();
    // A claim template, not a pod volume (an emptyDir dies with the pod).
    expect(podSpec().volumes?.find((v) => v.name === mount!.name)).toBeUndefined();
    const claim = workload().spec!.volumeClaimTemplates?.find(
      (t) => t.metadata?.name === mount!.name,
    );
    expect(claim?.spec?.accessModes).toEqual(['ReadWriteOnce']);
    expect(claim?.spec?.resources?.requests?.storage).toBeDefined();
    expect(workload().spec!.persistentVolumeClaimRetentionPolicy).toEqual({
      whenDeleted: 'Retain',
      whenScaled: 'Retain',
    });
    // The service user can write the volume.
    expect(podSpec().securityContext?.fsGroup).toBe(container().securityContext?.runAsUser);
  });

  test('When the HPA owns the count, then the workload has no replicas and is scaled by it', () => {
    expect(workload().spec!.replicas).toBeUndefined();
    expect(hpa().spec!.scaleTargetRef).toMatchObject({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      name: workload().metadata!.name,
    });
    expect(hpa().spec!.minReplicas).toBeGreaterThanOrEqual(3);
    expect(hpa().spec!.maxReplicas).toBeGreaterThan(hpa().spec!.minReplicas!);
    expect(container().resources?.requests?.cpu).toBeDefined(); // CPU utilisation needs a request
    // A scale-up never waits for a pod that is not ready.
    expect(workload().spec!.podManagementPolicy).toBe('Parallel');
    expect(workload().spec!.serviceName).toBe('sw-status-pods');
    const governing = one<IService>(builds!.default, 'Service', 'sw-status-pods');
    expect(governing.spec?.clusterIP).toBe('None');
    expect(matches(governing.spec?.selector)).toBe(true);
    // Its per-pod names resolve while a pod is unready — exactly when an operator looks at
    // one pod's /readyz (a missing migration, a wrong DATABASE_URL, a stalled rollout);
    // without it CoreDNS answers NXDOMAIN for an unready pod's name.
    expect(governing.spec?.publishNotReadyAddresses).toBe(true);
  });

  test('When pods are placed, then spread honours node taints and disk is requested', () => {
    const spread = podSpec().topologySpreadConstraints ?? [];
    expect(spread.map((c) => c.topologyKey).sort()).toEqual([
      'kubernetes.io/hostname',
      'topology.kubernetes.io/zone',
    ]);
    for (const constraint of spread) {
      expect(constraint.nodeTaintsPolicy).toBe('Honor');
      expect(matches(constraint.labelSelector?.matchLabels)).toBe(true);
    }
    const pdb = one<IPodDisruptionBudget>(builds!.default, 'PodDisruptionBudget');
    expect(matches(pdb.spec!.selector?.matchLabels)).toBe(true);
    expect(container().resources?.requests?.['ephemeral-storage']).toBeDefined();
  });

  test('When nodes are drained at any replica count, then one pod at a time may be evicted', () => {
    const pdb = one<IPodDisruptionBudget>(builds!.default, 'PodDisruptionBudget');
    expect(matches(pdb.spec!.selector?.matchLabels)).toBe(true);
    // What the PDB lets a drain evict at once, with `ready` pods up: at the HPA's minimum and
    // at its maximum. minAvailable: 2 allowed 8 of 10 at once (a node-pool upgrade, a
    // consolidation), leaving two pods all of SignalWire's callbacks, each with its own
    // per-replica rate limit, while the evicted ones wait for their spool volumes to re-attach.
    const allowed = (ready: number): number => {
      const { minAvailable, maxUnavailable } = pdb.spec!;
      if (maxUnavailable !== undefined) return Number(maxUnavailable);
      return Math.max(0, ready - Number(minAvailable));
    };
    expect(allowed(hpa().spec!.minReplicas!)).toBe(1);
    expect(allowed(hpa().spec!.maxReplicas)).toBe(1);
  });

  test('When every pod and the migration Job hold their connections, then they fit max_connections, as the README says', () => {
    const pool = Number(configData().DATABASE_POOL_MAX ?? defaults.databasePoolMax);
    const pods = hpa().spec!.maxReplicas;
    // A StatefulSet replaces a pod only once the old one is gone: no surge during a rollout.
    const surge = workload().kind === 'StatefulSet' ? 0 : pool;
    // src/db/migrate-cli.ts opens one connection.
    const migrateCli = readFileSync(path.join(ROOT, 'src', 'db', 'migrate-cli.ts'), 'utf8');
    expect(migrateCli).toMatch(/createDb\([^)]*,\s*1\)/);
    const job = 1;
    // Each process also holds one connection outside its pool: the change feed's LISTEN
    // (src/feed/feed-signal.ts; test/ops/connection-budget.test.ts counts a real process's).
    const listen = 1;
    const total = pods * (pool + listen) + surge + job;
    // PostgreSQL's default max_connections (100) less superuser_reserved_connections (3).
    expect(total).toBeLessThanOrEqual(97);
    expect(readme).toContain(`${pods} × (${pool} + ${listen}) + ${surge} + ${job} = ${total}`);
  });

  const podSpecs = [
    ['StatefulSet', () => podSpec()],
    ['migration Job', () => one<IJob>(builds!.default, 'Job').spec!.template.spec!],
  ] as const;

  test.each(podSpecs)(
    'When the %s runs, then it is non-root (UID 1000) with a read-only root and no privileges',
    (_label, spec: () => IPodSpec) => {
      const s = spec();
      expect(s.securityContext?.runAsNonRoot).toBe(true);
      expect(s.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
      expect(s.automountServiceAccountToken).toBe(false);
      for (const c of s.containers) {
        const sc = c.securityContext;
        expect(sc?.runAsNonRoot).toBe(true);
        expect(sc?.runAsUser ?? s.securityContext?.runAsUser).toBe(1000);
        expect(sc?.readOnlyRootFilesystem).toBe(true);
        expect(sc?.allowPrivilegeEscalation).toBe(false);
        expect(sc?.capabilities?.drop).toEqual(['ALL']);
        expect(c.resources?.requests?.['ephemeral-storage']).toBeDefined();
        expect(c.resources?.limits).toBeDefined();
        // A read-only root needs a writable /tmp.
        expect(c.volumeMounts?.map((m) => m.mountPath)).toContain('/tmp');
      }
    },
  );

  test.each(podSpecs)(
    'When PostgreSQL has a private CA, then the %s mounts it where the README’s sslrootcert points',
    (_label, spec: () => IPodSpec) => {
      const s = spec();
      const volume = s.volumes?.find((v) => v.configMap?.name === 'sw-status-postgres-ca');
      // Optional: a cluster without the ConfigMap starts the pods all the same.
      expect(volume?.configMap?.optional).toBe(true);
      const mount = s.containers[0]!.volumeMounts?.find((m) => m.name === volume?.name);
      expect(mount?.readOnly).toBe(true);
      expect(readme).toContain(`sslrootcert=${mount!.mountPath}/ca.crt`);
    },
  );
});

rendered('Kubernetes manifests: migrations before the rollout', () => {
  const job = () => one<IJob>(builds!.default, 'Job');
  const packageJson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };

  test('When the release is set, then the StatefulSet and the migration Job run its image, and the Job is named after its tag', () => {
    const image = one<IStatefulSet>(builds!.default, 'StatefulSet').spec!.template.spec!
      .containers[0]!.image!;
    expect(job().spec!.template.spec!.containers[0]!.image).toBe(image);
    const tag = image.slice(image.lastIndexOf(':') + 1);
    expect(job().metadata!.name).toBe(`sw-status-migrate-${tag}`);
    // A valid Job name: a DNS label of at most 63 characters (it becomes a pod label too).
    expect(job().metadata!.name).toMatch(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/);
  });

  test('When the next release changes the tag, then it gets a Job of its own (a Job’s template cannot change)', () => {
    const next = renderEdited((copy) => {
      const file = path.join(copy, 'release', 'kustomization.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/newTag: \S+/, 'newTag: 0.2.0'));
    });
    const nextJob = one<IJob>(next, 'Job');
    expect(nextJob.metadata!.name).toBe('sw-status-migrate-0.2.0');
    expect(nextJob.metadata!.name).not.toBe(job().metadata!.name);
    expect(nextJob.spec!.template.spec!.containers[0]!.image).toMatch(/:0\.2\.0$/);
  });

  test('When the release pins its image by digest, then every workload runs that digest and the Job is still named after the tag', () => {
    const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
    const pinned = renderEdited((copy) => {
      const file = path.join(copy, 'release', 'kustomization.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/# digest: \S+/, `digest: ${digest}`));
    });
    const image = one<IStatefulSet>(pinned, 'StatefulSet').spec!.template.spec!.containers[0]!
      .image!;
    const pinnedJob = one<IJob>(pinned, 'Job');
    expect(image).toBe(`registry.example.com/sw-status:0.1.0@${digest}`);
    expect(pinnedJob.spec!.template.spec!.containers[0]!.image).toBe(image);
    expect(pinnedJob.metadata!.name).toBe('sw-status-migrate-0.1.0');
  });

  // The tag was the text after the image's first ':': with a registry's port that is
  // "5000/sw-status", and `kubectl apply -k` refused the Job's name.
  test.each([
    ['registry.internal:5000/sw-status', ''],
    ['registry.internal:5000/team/sw-status', `sha256:${'0123456789abcdef'.repeat(4)}`],
  ])(
    'When the release image comes from a registry with a port (%s), then the migration Job is still named after the tag',
    (newName, digest) => {
      const objects = renderEdited((copy) => {
        const file = path.join(copy, 'release', 'kustomization.yaml');
        writeFileSync(
          file,
          readFileSync(file, 'utf8')
            .replace(/newName: \S+/, `newName: ${newName}`)
            .replace(/newTag: \S+/, 'newTag: 0.2.0-rc.1')
            .replace(/# digest: \S+/, digest ? `digest: ${digest}` : '$&'),
        );
      });
      const migrate = one<IJob>(objects, 'Job');
      expect({
        image: migrate.spec!.template.spec!.containers[0]!.image,
        name: migrate.metadata!.name,
      }).toEqual({
        image: `${newName}:0.2.0-rc.1${digest ? `@${digest}` : ''}`,
        name: 'sw-status-migrate-0.2.0-rc.1',
      });
    },
  );

  // README "Configure": newTag is required; a digest alone cannot name the Job. The render
  // refuses it rather than naming the Job something else.
  test('When the release pins the image by digest alone (no newTag), then k8s/ does not render', () => {
    expect(() =>
      renderEdited((copy) => {
        const file = path.join(copy, 'release', 'kustomization.yaml');
        writeFileSync(
          file,
          readFileSync(file, 'utf8')
            .replace(/\n\s*newTag: \S+/, '')
            .replace(/# digest: \S+/, `digest: sha256:${'0123456789abcdef'.repeat(4)}`),
        );
      }),
    ).toThrow(/out of bounds/);
  });

  test('When Argo CD syncs, then the Job is a PreSync hook that replaces its predecessor', () => {
    expect(job().metadata!.annotations).toMatchObject({
      'argocd.argoproj.io/hook': 'PreSync',
      'argocd.argoproj.io/hook-delete-policy': 'BeforeHookCreation',
    });
  });

  test('When Flux reconciles, then k8s/migrate runs and completes before k8s/app', () => {
    const kustomizations = flux as unknown as IFluxKustomization[];
    const migrate = kustomizations.find((k) => k.spec?.path === './k8s/migrate');
    const app = kustomizations.find((k) => k.spec?.path === './k8s/app');
    expect(migrate?.spec).toMatchObject({ wait: true, force: true, prune: true });
    expect(app?.spec?.dependsOn).toEqual([{ name: migrate!.metadata!.name }]);
    expect(app?.spec?.wait).toBe(true);
    // The two paths are the whole service.
    expect(builds!.migrate.map((o) => o.kind)).toEqual(['Job']);
    expect(builds!.app.some((o) => o.kind === 'StatefulSet')).toBe(true);
  });

  test('When the migration Job runs, then it calls the built migrate CLI with only DATABASE_URL from the Secret', () => {
    const spec = job().spec!;
    const migrate = spec.template.spec!.containers[0]!;
    const [, entry] =
      /^node --import tsx (src\/\S+)\.ts$/.exec(packageJson.scripts.migrate ?? '') ?? [];
    expect([...(migrate.command ?? []), ...(migrate.args ?? [])]).toEqual([
      'node',
      `${entry!.replace(/^src\//, 'dist/')}.js`,
    ]);
    expect(migrate.envFrom).toBeUndefined();
    expect(migrate.env?.find((e) => e.name === 'DATABASE_URL')?.valueFrom?.secretKeyRef).toEqual({
      name: 'sw-status-secrets',
      key: 'DATABASE_URL',
    });
    expect(['Never', 'OnFailure']).toContain(spec.template.spec!.restartPolicy);
    expect(spec.backoffLimit).toBeGreaterThanOrEqual(1);
    expect(spec.activeDeadlineSeconds).toBeGreaterThan(0);
    // Not one of the service's pods: no Service, PDB or NetworkPolicy selects it.
    const server = one<IStatefulSet>(builds!.default, 'StatefulSet').spec!.selector.matchLabels!;
    const labels = spec.template.metadata?.labels ?? {};
    expect(Object.entries(server).every(([key, value]) => labels[key] === value)).toBe(false);
  });
});

rendered('Kubernetes manifests: traffic', () => {
  const workload = () => one<IStatefulSet>(builds!.default, 'StatefulSet');
  const podLabels = () => workload().spec!.template.metadata!.labels!;
  const matches = (selector: Record<string, string> | undefined) =>
    !!selector &&
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([key, value]) => podLabels()[key] === value);
  const containerPort = (name: string) =>
    workload().spec!.template.spec!.containers[0]!.ports!.find((p) => p.name === name)!
      .containerPort;
  const policy = () => one<INetworkPolicy>(builds!.default, 'NetworkPolicy');
  const admits = (ports: Array<{ port?: number | string }> | undefined, port: number) =>
    !ports ||
    ports.some((p) => (typeof p.port === 'string' ? containerPort(p.port) : p.port) === port);

  test('When the Services select pods, then public maps 80 to PORT and internal 8081 to INTERNAL_PORT', () => {
    const publicService = one<IService>(builds!.default, 'Service', 'sw-status-public');
    const internalService = one<IService>(builds!.default, 'Service', 'sw-status-internal');
    for (const service of [publicService, internalService]) {
      expect(matches(service.spec?.selector)).toBe(true);
      expect(service.spec?.ports).toHaveLength(1);
    }
    expect(publicService.spec!.ports![0]!.port).toBe(80);
    expect(containerPort(String(publicService.spec!.ports![0]!.targetPort))).toBe(defaults.port);
    expect(internalService.spec!.ports![0]!.port).toBe(defaults.internalPort);
    expect(containerPort(String(internalService.spec!.ports![0]!.targetPort))).toBe(
      defaults.internalPort,
    );
  });

  test('When the Ingress routes traffic, then only the /callbacks prefix reaches the public Service', () => {
    const ingress = one<IIngress>(builds!.default, 'Ingress');
    expect(ingress.spec?.defaultBackend).toBeUndefined();
    const rules = ingress.spec?.rules ?? [];
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      for (const p of rule.http?.paths ?? []) {
        expect(p).toMatchObject({ path: '/callbacks', pathType: 'Prefix' });
        expect(p.backend.service?.name).toBe('sw-status-public');
      }
    }
    // TLS covers the host, and that host is the one SignalWire calls (signatures use it).
    const hosts = rules.map((r) => r.host);
    const tlsHosts = (ingress.spec?.tls ?? []).flatMap((t) => t.hosts ?? []);
    expect(hosts.every((h) => h !== undefined && tlsHosts.includes(h))).toBe(true);
    const configData = one<IConfigMap>(builds!.default, 'ConfigMap', 'sw-status-config').data ?? {};
    const publicUrl = new URL(configData.PUBLIC_BASE_URL!);
    expect(publicUrl.protocol).toBe('https:');
    expect(hosts).toContain(publicUrl.hostname);
  });

  test('When the NetworkPolicy admits traffic, then 8080 is open only to the ingress controller and 8081 to labelled clients and Prometheus', () => {
    expect(matches(policy().spec?.podSelector.matchLabels)).toBe(true);
    expect(policy().spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    const rules = policy().spec?.ingress ?? [];
    const selects = (peer: INetworkPolicyPeer) =>
      peer.ipBlock === undefined &&
      (Object.keys(peer.podSelector?.matchLabels ?? {}).length > 0 ||
        Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length > 0);
    for (const port of [defaults.port, defaults.internalPort]) {
      const admitting = rules.filter((r) => admits(r.ports, port));
      expect(admitting.length).toBeGreaterThan(0);
      for (const rule of admitting) {
        // `from` absent, or `namespaceSelector: {}` alone, would be every source.
        expect(rule.from?.length).toBeGreaterThan(0);
        expect(rule.from!.every(selects)).toBe(true);
      }
    }
    const publicPeers = JSON.stringify(rules.filter((r) => admits(r.ports, defaults.port)));
    expect(publicPeers).toContain('ingress-nginx');
    expect(publicPeers).not.toContain('sw-status-client');
    const internalPeers = JSON.stringify(
      rules.filter((r) => admits(r.ports, defaults.internalPort)),
    );
    expect(internalPeers).toContain('"sw-status-client":"true"');
    expect(internalPeers).toContain('"app.kubernetes.io/name":"prometheus"');
  });

  test('When egress is denied by default, then DNS, PostgreSQL and HTTPS to the internet (not the cluster’s ranges) are allowed', () => {
    const rules = policy().spec?.egress ?? [];
    const allowing = (port: number, protocol: string) =>
      rules.filter((r) => r.ports?.some((p) => p.port === port && p.protocol === protocol));
    for (const protocol of ['UDP', 'TCP']) {
      const dns = allowing(53, protocol);
      expect(dns).toHaveLength(1);
      expect(dns[0]!.to).toEqual([
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
          podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        },
      ]);
    }
    expect(allowing(5432, 'TCP')).toHaveLength(1);
    const https = allowing(443, 'TCP');
    expect(https).toHaveLength(1);
    const blocks = (https[0]!.to ?? []).map((peer) => peer.ipBlock);
    expect(blocks.map((b) => b?.cidr)).toEqual(['0.0.0.0/0', '::/0']);
    expect(blocks[0]?.except).toEqual(
      expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']),
    );
    expect(blocks[1]?.except).toEqual(expect.arrayContaining(['fc00::/7', 'fe80::/10']));
    // Nothing else leaves the pod.
    expect(rules).toHaveLength(3);
  });

  test('When the Prometheus Operator scrapes, then the ServiceMonitor selects only the internal Service’s /metrics', () => {
    const monitor = one<IServiceMonitor>(builds!.default, 'ServiceMonitor');
    const selected = builds!.default
      .filter((o): o is K8sObject & IService => o.kind === 'Service')
      .filter((s) =>
        Object.entries(monitor.spec.selector.matchLabels ?? {}).every(
          ([key, value]) => (s.metadata?.labels as Record<string, string>)?.[key] === value,
        ),
      );
    expect(selected.map((s) => s.metadata?.name)).toEqual(['sw-status-internal']);
    expect(monitor.spec.endpoints).toEqual([
      expect.objectContaining({ port: 'internal', path: '/metrics' }),
    ]);
    expect(selected[0]!.spec?.ports?.map((p) => p.name)).toContain('internal');
  });

  test('When the monitoring component is rendered, then the alert rules and the Grafana dashboard (labelled, fixed uid) are in k8s/', () => {
    const rule = one<K8sObject & { spec: { groups: unknown[] } }>(
      builds!.default,
      'PrometheusRule',
      'sw-status',
    );
    expect(rule.metadata.namespace).toBe('sw-status');
    expect(rule.spec.groups.length).toBeGreaterThan(0);
    const dashboard = one<IConfigMap>(builds!.default, 'ConfigMap', 'sw-status-dashboard');
    expect(dashboard.metadata?.labels?.grafana_dashboard).toBe('1');
    const model = JSON.parse(dashboard.data?.['sw-status.json'] ?? '{}') as { uid?: string };
    expect(model.uid).toBe('sw-status-ops');
  });
});

test('The entry points of k8s/ exist', () => {
  for (const entry of ENTRY_POINTS) {
    expect(statSync(path.join(ROOT, entry, 'kustomization.yaml')).isFile()).toBe(true);
  }
});
