import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';

/**
 * `kubectl kustomize`: the same kustomize `kubectl apply -k` runs, so the tests check what a
 * cluster would receive, not the files it is built from. SW_KUBECTL names the binary (CI finds
 * or installs one, .ci/run); otherwise `kubectl` on PATH.
 */

export const ROOT = path.resolve(__dirname, '..', '..');
export const K8S_DIR = path.join(ROOT, 'k8s');
const KUBECTL = process.env.SW_KUBECTL || 'kubectl';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** The kustomize version of the kubectl found, e.g. "v5.5.0"; undefined when there is none. */
export function kustomizeVersion(): string | undefined {
  try {
    const out = execFileSync(KUBECTL, ['version', '--client', '-o', 'json'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString();
    return (JSON.parse(out) as { kustomizeVersion?: string }).kustomizeVersion;
  } catch {
    return undefined;
  }
}

/** Components, `labels` and `replacements` as k8s/ uses them need kustomize 5. */
export function kustomizeUsable(version: string | undefined): boolean {
  return Number(/^v(\d+)\./.exec(version ?? '')?.[1] ?? 0) >= 5;
}

/** Renders a kustomization directory into its objects. */
export function render(dir: string): K8sObject[] {
  const out = execFileSync(KUBECTL, ['kustomize', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 16 * 1024 * 1024,
  }).toString();
  return yaml.loadAll(out).filter((doc): doc is K8sObject => doc !== null && doc !== undefined);
}

/** Plain YAML files (not a kustomization), e.g. k8s/flux/. */
export function readObjects(file: string): K8sObject[] {
  return yaml
    .loadAll(readFileSync(file, 'utf8'))
    .filter((doc): doc is K8sObject => doc !== null && doc !== undefined);
}

/**
 * Renders k8s/ as a user's own kustomization on top of it would: `extra` is that
 * kustomization's YAML (resources and components relative to k8s/ are rewritten). Built in a
 * temporary directory outside k8s/, as kustomize forbids a root that contains its base.
 */
export function renderOnTop(extra: Record<string, unknown>): K8sObject[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-kustomize-'));
  try {
    const fromK8s = (entry: string) => path.relative(dir, path.join(K8S_DIR, entry)) || '.';
    const kustomization = {
      ...extra,
      resources: ((extra.resources as string[] | undefined) ?? ['.']).map(fromK8s),
      ...(extra.components ? { components: (extra.components as string[]).map(fromK8s) } : {}),
    };
    writeFileSync(path.join(dir, 'kustomization.yaml'), yaml.dump(kustomization));
    return render(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Renders a copy of k8s/ after `edit` changed its files (e.g. the next release's tag). */
export function renderEdited(edit: (copy: string) => void): K8sObject[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-k8s-copy-'));
  try {
    cpSync(K8S_DIR, dir, { recursive: true });
    edit(dir);
    return render(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
