import { existsSync, readdirSync, readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import path from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Job } from 'kubernetes-models/batch/v1/Job';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
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

/**
 * The deployment artefacts (k8s/, Dockerfile, .dockerignore) checked against the Kubernetes API
 * schemas and against the code they deploy: ports, probes, environment, shutdown timing, image.
 * No cluster and no Docker daemon needed.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const K8S_DIR = path.join(ROOT, 'k8s');

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
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/**
 * Validates `doc` with the kubernetes-models schema for its kind and returns the fields the
 * schema does not know. The generated validators ignore unknown properties (a misspelt
 * `readinesProbe` passes, and the API server would drop it with a mere warning), so the document
 * is wrapped in a proxy that records every property the validator reads: a property it never
 * reads is not in the schema.
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

// ---------------------------------------------------------------------------------------------
// Loading

interface Manifest {
  file: string;
  apiVersion: string;
  kind: string;
  name: string;
  doc: Record<string, unknown>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const yamlFiles = readdirSync(K8S_DIR)
  .filter((file) => /\.ya?ml$/.test(file))
  .sort();

function loadManifests(): Manifest[] {
  const manifests: Manifest[] = [];
  for (const file of yamlFiles) {
    for (const doc of yaml.loadAll(readFileSync(path.join(K8S_DIR, file), 'utf8'))) {
      if (doc === null || doc === undefined) continue; // an empty document between `---`
      if (!isRecord(doc)) throw new Error(`${file}: a document is not a mapping`);
      const metadata = isRecord(doc.metadata) ? doc.metadata : {};
      manifests.push({
        file,
        apiVersion: String(doc.apiVersion),
        kind: String(doc.kind),
        name: String(metadata.name),
        doc,
      });
    }
  }
  return manifests;
}

const manifests = loadManifests();
const kustomization = manifests.find((m) => m.kind === 'Kustomization');
const resources = manifests.filter((m) => m.kind !== 'Kustomization');

/** The single manifest of `kind` (optionally with `name`), typed after schema validation. */
function one<T>(kind: string, name?: string): T {
  const found = resources.filter((m) => m.kind === kind && (name === undefined || m.name === name));
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  }
  // Every resource passes the schema test below, so the document has the model's shape.
  return found[0]!.doc as T;
}

function all<T>(kind: string): T[] {
  return resources.filter((m) => m.kind === kind).map((m) => m.doc as T);
}

const deployment = one<IDeployment>('Deployment');
const podSpec = deployment.spec!.template.spec!;
const container = podSpec.containers[0]!;
const podLabels = deployment.spec!.template.metadata!.labels!;
const configMap = one<IConfigMap>('ConfigMap');
const configData = configMap.data ?? {};
const secret = one<ISecret>('Secret');
const secretData = { ...(secret.stringData ?? {}), ...(secret.data ?? {}) };
const job = one<IJob>('Job');
const jobSpec = job.spec!;
const jobPodSpec = jobSpec.template.spec!;

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

function selectorMatches(selector: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => podLabels[key] === value);
}

function containerPort(name: string): number {
  const port = container.ports?.find((p) => p.name === name);
  if (!port) throw new Error(`container port ${name} not found`);
  return port.containerPort;
}

/** A probe/Service/NetworkPolicy port (name or number) resolved against the container. */
function resolvePort(port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

function preStopSleepSeconds(c: IContainer): number {
  const preStop = c.lifecycle?.preStop;
  if (preStop?.sleep) return preStop.sleep.seconds;
  const command = preStop?.exec?.command ?? [];
  if (command[0] === 'sleep' && command[1] !== undefined) return Number(command[1]);
  return 0;
}

// ---------------------------------------------------------------------------------------------

describe('Kubernetes manifests: schema', () => {
  test('When k8s/ is read, then it holds a kustomization and resources', () => {
    expect(kustomization).toBeDefined();
    expect(resources.length).toBeGreaterThan(0);
  });

  test.each(resources.map((m) => [`${m.file} ${m.kind}/${m.name}`, m] as const))(
    'When %s is validated against the Kubernetes schema, then it is valid with no unknown field',
    (_label, manifest) => {
      const model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
      if (!model)
        throw new Error(`no schema registered for ${manifest.apiVersion} ${manifest.kind}`);
      expect(validateStrict(model, manifest.doc)).toEqual([]);
    },
  );

  test('When a manifest has a wrongly typed field, then validation throws', () => {
    const broken = structuredClone(deployment);
    broken.spec!.template.spec!.containers[0]!.ports![0]!.containerPort = 'eighty' as never;
    expect(() => new Deployment(broken).validate()).toThrow(/containerPort must be integer/);
  });

  test('When a manifest misspells a field, then it is reported as unknown', () => {
    const broken = structuredClone(deployment) as unknown as Record<string, unknown>;
    const spec = structuredClone(podSpec);
    const { readinessProbe, ...rest } = spec.containers[0]!;
    spec.containers[0] = { ...rest, readinesProbe: readinessProbe } as IContainer;
    broken.spec = { ...deployment.spec, template: { ...deployment.spec!.template, spec } };
    expect(validateStrict(Deployment, broken)).toEqual([
      '/spec/template/spec/containers/0/readinesProbe',
    ]);
  });

  test('When kustomize builds k8s/, then every manifest file is listed and every listed file exists', () => {
    const listed = (kustomization?.doc.resources ?? []) as string[];
    const files = yamlFiles.filter((f) => f !== 'kustomization.yaml' && f !== 'kustomization.yml');
    expect([...listed].sort()).toEqual(files);
    expect(kustomization?.doc.namespace).toBe('sw-status');
    expect(one<{ metadata: { name: string } }>('Namespace').metadata.name).toBe('sw-status');
  });

  test('When the image is set in kustomization.yaml, then the Deployment and the migration Job run it', () => {
    const images = (kustomization?.doc.images ?? []) as Array<{ name: string }>;
    const jobImage = jobPodSpec.containers[0]!.image;
    expect(jobImage).toBe(container.image);
    expect(images.map((i) => i.name)).toContain(container.image);
  });
});

describe('Kubernetes manifests: configuration agrees with src/config.ts', () => {
  test('When the ConfigMap or the Secret sets a variable, then src/config.ts reads it', () => {
    expect(configKeys.size).toBeGreaterThan(10);
    const unknown = [...Object.keys(configData), ...Object.keys(secretData)].filter(
      (key) => !configKeys.has(key),
    );
    expect(unknown).toEqual([]);
  });

  test('When a variable is a secret, then it is in the Secret and never in the ConfigMap', () => {
    for (const name of SECRET_VARIABLES) {
      expect(Object.keys(secretData)).toContain(name);
      expect(Object.keys(configData)).not.toContain(name);
    }
  });

  test('When NODE_ENV=production requires a variable, then the ConfigMap or the Secret provides it', () => {
    expect(requiredInProduction.length).toBeGreaterThan(0);
    expect(configData.NODE_ENV).toBe('production');
    const provided = new Set([...Object.keys(configData), ...Object.keys(secretData)]);
    expect(requiredInProduction.filter((name) => !provided.has(name))).toEqual([]);
  });

  test('When the Secret placeholders are replaced by real values, then the production configuration loads', () => {
    const realValues: Record<string, string> = {
      DATABASE_URL: 'postgres://sw_status:password@db.internal:5432/sw_status',
      SIGNALWIRE_SIGNING_KEYS: 'PSK_0123456789abcdef0123456789',
      CALLBACK_TOKEN_SECRET: 'a-long-random-callback-token-secret',
      API_TOKENS: 'a-long-random-api-token',
    };
    const filled = Object.fromEntries(
      Object.keys(secretData).map((key) => [key, realValues[key] ?? 'x'.repeat(32)]),
    );
    const config = loadConfig({ ...configData, ...filled });
    expect(config.isProduction).toBe(true);
    expect(config.defaultsInForce).toEqual([]);
    expect(config.shutdownDrainMs).toBe(Number(configData.SHUTDOWN_DRAIN_MS));
  });

  test('When the example Secret is applied unchanged, then its values are marked placeholders and the service refuses to start', () => {
    for (const value of Object.values(secretData)) expect(value).toContain('REPLACE_ME');
    expect(() => loadConfig({ ...configData, ...secretData })).toThrow(/Invalid configuration/);
  });

  test('When a ConfigMap or Secret value would read as a YAML 1.1 boolean, then it is quoted', () => {
    // js-yaml reads YAML 1.2, where `yes`/`on` are strings; kubectl reads YAML 1.1, where they
    // are booleans and the apply fails ("cannot unmarshal bool into ... string").
    const yaml11Bool = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/;
    for (const file of ['configmap.yaml', 'secret.example.yaml']) {
      const lines = readFileSync(path.join(K8S_DIR, file), 'utf8').split('\n');
      const unquoted = lines.filter((line) => {
        const value = /^ {2}[A-Z][A-Z0-9_]*:\s*(\S.*)$/.exec(line)?.[1]?.trim();
        return value !== undefined && yaml11Bool.test(value);
      });
      expect(unquoted).toEqual([]);
    }
  });
});

describe('Kubernetes manifests: the Deployment', () => {
  test('When the container ports are compared with src/config.ts, then they are its PORT and INTERNAL_PORT', () => {
    expect(containerPort('public')).toBe(defaults.port);
    expect(containerPort('internal')).toBe(defaults.internalPort);
    expect(Number(configData.PORT ?? defaults.port)).toBe(defaults.port);
    expect(Number(configData.INTERNAL_PORT ?? defaults.internalPort)).toBe(defaults.internalPort);
  });

  test('When the kubelet probes a pod, then liveness asks /healthz and readiness /readyz on the public port', () => {
    expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(resolvePort(container.livenessProbe?.httpGet?.port)).toBe(defaults.port);
    expect(resolvePort(container.readinessProbe?.httpGet?.port)).toBe(defaults.port);
    if (container.startupProbe) {
      expect(container.startupProbe.httpGet?.path).toBe('/healthz');
      expect(resolvePort(container.startupProbe.httpGet?.port)).toBe(defaults.port);
    }
  });

  test('When a pod is terminated, then the grace period outlasts the preStop sleep plus SHUTDOWN_DRAIN_MS', () => {
    const drainMs = Number(configData.SHUTDOWN_DRAIN_MS ?? defaults.shutdownDrainMs);
    const graceMs = (podSpec.terminationGracePeriodSeconds ?? 30) * 1000;
    expect(preStopSleepSeconds(container)).toBeGreaterThan(0);
    expect(graceMs).toBeGreaterThan(drainMs);
    expect(graceMs).toBeGreaterThan(preStopSleepSeconds(container) * 1000 + drainMs);
  });

  test('When the Deployment takes its environment, then it comes from the ConfigMap and the Secret', () => {
    for (const spec of [podSpec, jobPodSpec]) {
      const envFrom = spec.containers[0]!.envFrom ?? [];
      expect(envFrom.map((e) => e.configMapRef?.name).filter(Boolean)).toEqual([
        configMap.metadata!.name,
      ]);
      expect(envFrom.map((e) => e.secretRef?.name).filter(Boolean)).toEqual([
        secret.metadata!.name,
      ]);
    }
  });

  test.each([
    ['Deployment', podSpec],
    ['migration Job', jobPodSpec],
  ] as const)(
    'When the %s runs, then it is non-root (UID 1000) with a read-only root and no privileges',
    (_label, spec: IPodSpec) => {
      expect(spec.securityContext?.runAsNonRoot).toBe(true);
      expect(spec.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
      expect(spec.automountServiceAccountToken).toBe(false);
      for (const c of spec.containers) {
        const sc = c.securityContext;
        expect(sc?.runAsNonRoot).toBe(true);
        expect(sc?.runAsUser ?? spec.securityContext?.runAsUser).toBe(1000);
        expect(sc?.readOnlyRootFilesystem).toBe(true);
        expect(sc?.allowPrivilegeEscalation).toBe(false);
        expect(sc?.capabilities?.drop).toEqual(['ALL']);
        expect(c.resources?.requests).toBeDefined();
        expect(c.resources?.limits).toBeDefined();
        // A read-only root needs a writable /tmp.
        expect(c.volumeMounts?.map((m) => m.mountPath)).toContain('/tmp');
      }
    },
  );

  test('When the service writes its outage spool, then SPOOL_DIR is a mounted volume', () => {
    const spoolDir = configData.SPOOL_DIR;
    expect(spoolDir).toBeDefined();
    expect(path.isAbsolute(spoolDir!)).toBe(true);
    const mount = container.volumeMounts?.find((m) => m.mountPath === spoolDir);
    expect(mount).toBeDefined();
    expect(podSpec.volumes?.find((v) => v.name === mount?.name)).toBeDefined();
  });

  test('When pods roll or nodes drain, then capacity is kept', () => {
    const hpa = one<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler');
    const pdb = one<IPodDisruptionBudget>('PodDisruptionBudget');
    expect(deployment.spec!.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
    // The HPA owns the replica count; a fixed replicas field must not undercut its minimum.
    expect(deployment.spec!.replicas ?? hpa.spec!.minReplicas).toBeGreaterThanOrEqual(3);
    expect(hpa.spec!.scaleTargetRef).toMatchObject({
      kind: 'Deployment',
      name: deployment.metadata!.name,
    });
    expect(hpa.spec!.minReplicas).toBeGreaterThanOrEqual(3);
    expect(hpa.spec!.maxReplicas).toBeGreaterThan(hpa.spec!.minReplicas!);
    expect(hpa.spec!.metrics).toContainEqual({
      type: 'Resource',
      resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
    });
    expect(container.resources?.requests?.cpu).toBeDefined(); // CPU utilisation needs a request
    expect(selectorMatches(pdb.spec!.selector?.matchLabels)).toBe(true);
    expect(pdb.spec!.minAvailable).toBe(2);
    expect(Number(pdb.spec!.minAvailable)).toBeLessThan(hpa.spec!.minReplicas!);
    const spread = podSpec.topologySpreadConstraints ?? [];
    expect(spread.map((c) => c.topologyKey)).toContain('kubernetes.io/hostname');
    for (const constraint of spread) {
      expect(selectorMatches(constraint.labelSelector?.matchLabels)).toBe(true);
    }
    expect(selectorMatches(deployment.spec!.selector.matchLabels)).toBe(true);
  });
});

describe('Kubernetes manifests: traffic', () => {
  const publicService = one<IService>('Service', 'sw-status-public');
  const internalService = one<IService>('Service', 'sw-status-internal');

  test('When the Services select pods, then public maps 80 to PORT and internal 8081 to INTERNAL_PORT', () => {
    for (const service of [publicService, internalService]) {
      expect(selectorMatches(service.spec?.selector)).toBe(true);
    }
    expect(publicService.spec?.ports).toHaveLength(1);
    expect(publicService.spec?.ports?.[0]?.port).toBe(80);
    expect(resolvePort(publicService.spec?.ports?.[0]?.targetPort)).toBe(defaults.port);
    expect(internalService.spec?.ports).toHaveLength(1);
    expect(internalService.spec?.ports?.[0]?.port).toBe(defaults.internalPort);
    expect(resolvePort(internalService.spec?.ports?.[0]?.targetPort)).toBe(defaults.internalPort);
  });

  test('When the Ingress routes traffic, then only the /callbacks prefix reaches the public Service', () => {
    const ingresses = all<IIngress>('Ingress');
    expect(ingresses).toHaveLength(1);
    const ingress = ingresses[0]!;
    expect(ingress.spec?.defaultBackend).toBeUndefined();
    const rules = ingress.spec?.rules ?? [];
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      for (const p of rule.http?.paths ?? []) {
        expect(p.path).toBe('/callbacks');
        expect(p.pathType).toBe('Prefix');
        expect(p.backend.service?.name).toBe(publicService.metadata?.name);
        const port = p.backend.service?.port;
        expect(
          publicService.spec?.ports?.some(
            (sp) => sp.name === port?.name || sp.port === port?.number,
          ),
        ).toBe(true);
      }
    }
    // TLS covers the host, and that host is the one SignalWire calls (signatures use it).
    const hosts = rules.map((r) => r.host);
    const tlsHosts = (ingress.spec?.tls ?? []).flatMap((t) => t.hosts ?? []);
    expect(hosts.every((h) => h !== undefined && tlsHosts.includes(h))).toBe(true);
    const publicUrl = new URL(configData.PUBLIC_BASE_URL!);
    expect(publicUrl.protocol).toBe('https:');
    expect(hosts).toContain(publicUrl.hostname);
  });

  test('When the NetworkPolicy admits traffic, then the internal port is open only to labelled clients and Prometheus', () => {
    const policy = one<INetworkPolicy>('NetworkPolicy');
    expect(selectorMatches(policy.spec?.podSelector.matchLabels)).toBe(true);
    expect(policy.spec?.policyTypes).toContain('Ingress');
    const rules = policy.spec?.ingress ?? [];
    // A rule without ports admits every port, so it counts for both.
    const admits = (rule: (typeof rules)[number], port: number): boolean =>
      !rule.ports || rule.ports.some((p) => resolvePort(p.port) === port);

    expect(rules.some((r) => admits(r, defaults.port))).toBe(true);
    const internalRules = rules.filter((r) => admits(r, defaults.internalPort));
    expect(internalRules.length).toBeGreaterThan(0);
    for (const rule of internalRules) {
      expect(rule.from?.length).toBeGreaterThan(0);
      for (const peer of rule.from ?? []) {
        expect(peer.ipBlock).toBeUndefined();
        expect(peer.podSelector ?? peer.namespaceSelector).toBeDefined();
        // `namespaceSelector: {}` alone would be every pod in the cluster.
        const selectsSomething =
          Object.keys(peer.podSelector?.matchLabels ?? {}).length > 0 ||
          Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length > 0;
        expect(selectsSomething).toBe(true);
      }
    }
    const peers = JSON.stringify(internalRules.flatMap((r) => r.from ?? []));
    expect(peers).toContain('"sw-status-client":"true"');
  });
});

describe('The migration Job and the Dockerfile agree with the code', () => {
  const packageJson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  /** `tsx src/x.ts` (an npm script) → `node dist/x.js` (the same entry point after the build). */
  const built = (script: string | undefined): string[] => {
    const [, entry] = /^tsx (src\/\S+)\.ts$/.exec(script ?? '') ?? [];
    if (!entry) throw new Error(`not a tsx script: ${script}`);
    return ['node', `${entry.replace(/^src\//, 'dist/')}.js`];
  };

  test('When tsc builds the image, then src/ compiles to dist/ as the entry points expect', () => {
    const buildConfig = JSON.parse(
      readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8'),
    ) as { compilerOptions: { rootDir: string; outDir: string } };
    expect(buildConfig.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
  });

  test('When the migration Job runs, then it calls the built migrate CLI once per attempt with bounded retries', () => {
    const migrate = jobPodSpec.containers[0]!;
    expect([...(migrate.command ?? []), ...(migrate.args ?? [])]).toEqual(
      built(packageJson.scripts.migrate),
    );
    expect(['Never', 'OnFailure']).toContain(jobPodSpec.restartPolicy);
    expect(jobSpec.backoffLimit).toBeGreaterThanOrEqual(1);
    expect(jobSpec.activeDeadlineSeconds).toBeGreaterThan(0);
    // The Job is not one of the service's pods: no Service, PDB or NetworkPolicy selects it.
    expect(selectorMatches(jobSpec.template.metadata?.labels)).toBe(false);
  });

  interface Instruction {
    keyword: string;
    args: string;
  }
  /** Dockerfile instructions per stage (comments dropped, continuation lines joined). */
  const stages = (() => {
    const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const lines = text
      .split('\n')
      .filter((line) => !/^\s*#/.test(line))
      .join('\n')
      .replace(/\\\n/g, ' ')
      .split('\n')
      .filter((line) => line.trim() !== '');
    const result: Instruction[][] = [];
    for (const line of lines) {
      const [, keyword = '', args = ''] = /^\s*(\w+)\s+(.*)$/.exec(line) ?? [];
      if (keyword.toUpperCase() === 'FROM') result.push([]);
      result.at(-1)?.push({ keyword: keyword.toUpperCase(), args: args.trim() });
    }
    return result;
  })();
  const runtime = stages.at(-1) ?? [];
  const last = (keyword: string): string | undefined =>
    runtime.filter((i) => i.keyword === keyword).at(-1)?.args;

  test('When the Dockerfile is built, then every stage starts from node:24-bookworm-slim', () => {
    const aliases = new Set<string>();
    for (const stage of stages) {
      const [, image = '', alias] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(stage[0]?.args ?? '') ?? [];
      expect(image === 'node:24-bookworm-slim' || aliases.has(image)).toBe(true);
      if (alias) aliases.add(alias);
    }
    const allArgs = stages.flat().map((i) => i.args);
    expect(allArgs.some((a) => /\bnpm ci\b(?!.*--omit=dev)/.test(a))).toBe(true);
    expect(allArgs.some((a) => /\bnpm run build\b/.test(a))).toBe(true);
    expect(allArgs.some((a) => /\bnpm ci\b.*--omit=dev/.test(a))).toBe(true);
  });

  test('When the image runs, then it exposes the config ports, runs as UID 1000 in production and starts dist/main.js', () => {
    const exposed = runtime
      .filter((i) => i.keyword === 'EXPOSE')
      .flatMap((i) => i.args.split(/\s+/))
      .map((p) => Number(p.replace(/\/tcp$/, '')))
      .sort();
    expect(exposed).toEqual([defaults.port, defaults.internalPort].sort());
    expect(last('USER')).toMatch(/^1000(:1000)?$/);
    expect(Number(last('USER')?.split(':')[0])).toBe(container.securityContext?.runAsUser);
    expect(runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args)).toContainEqual(
      expect.stringMatching(/\bNODE_ENV=production\b/),
    );
    expect(JSON.parse(last('CMD') ?? 'null')).toEqual(built(packageJson.scripts.start));
    expect(last('HEALTHCHECK')).toMatch(/127\.0\.0\.1.*\/healthz/);
    // The runtime carries the built code and the SQL migrations the Job applies.
    const copies = runtime.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    expect(copies).toContainEqual(expect.stringMatching(/--from=\S+ \/app\/dist \.\/dist$/));
    expect(copies).toContainEqual(expect.stringMatching(/^db \.\/db$/));
  });

  test('When the build context is filtered by .dockerignore, then every path the Dockerfile copies is in it', () => {
    const patterns = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    // The subset of .dockerignore matching used here: `*` and plain paths, last match wins.
    const excluded = (file: string): boolean => {
      let result = false;
      for (const raw of patterns) {
        const negated = raw.startsWith('!');
        const pattern = raw.replace(/^!/, '').replace(/\/$/, '');
        const matches = pattern === '*' || file === pattern || file.startsWith(`${pattern}/`);
        if (matches) result = !negated;
      }
      return result;
    };
    const sources = stages
      .flat()
      .filter((i) => i.keyword === 'COPY' && !i.args.includes('--from='))
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((a) => !a.startsWith('--'))
          .slice(0, -1),
      );
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      expect(existsSync(path.join(ROOT, source))).toBe(true);
      expect({ source, excluded: excluded(source) }).toEqual({ source, excluded: false });
    }
    expect(excluded('.env')).toBe(true);
    expect(excluded('node_modules')).toBe(true);
  });
});
