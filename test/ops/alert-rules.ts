import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { K8S_DIR, readObjects } from '../deploy/kustomize';

/** An alert, or (with `record` instead of `alert`) a recording rule. */
export interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export const RULE_FILE = path.join(K8S_DIR, 'components', 'monitoring', 'prometheusrule.yaml');

/** The rule groups of k8s/components/monitoring/prometheusrule.yaml (its spec.groups). */
export function alertRuleGroups(): Array<{ name: string; rules: AlertRule[] }> {
  const [resource] = readObjects(RULE_FILE) as unknown as Array<{
    spec: { groups: Array<{ name: string; rules: AlertRule[] }> };
  }>;
  return resource!.spec.groups;
}

/** The alerts of those groups, without the recording rules. */
export function alertRules(): AlertRule[] {
  return alertRuleGroups().flatMap((g) => g.rules.filter((rule) => rule.alert !== undefined));
}

/** The names the recording rules give their series: not served by /metrics, made from it. */
export function recordedNames(): Set<string> {
  return new Set(
    alertRuleGroups().flatMap((g) => g.rules.flatMap((rule) => (rule.record ? [rule.record] : []))),
  );
}

export const PROMTOOL = process.env.PROMTOOL_PATH ?? '/usr/bin/promtool';

/**
 * Runs `promtool test rules` in `work` over the rules with these test groups (promtool's
 * `tests:`) and gives its output and whether it passed. Annotations are left out (promtool
 * compares them verbatim); `promtool check rules` parses their templates.
 */
export async function runPromtoolTest(
  work: string,
  name: string,
  testGroups: unknown[],
): Promise<{ ok: boolean; output: string }> {
  const rules = path.join(work, `${name}.rules.yaml`);
  writeFileSync(
    rules,
    yaml.dump({
      groups: alertRuleGroups().map((g) => ({
        ...g,
        rules: g.rules.map(({ annotations: _annotations, ...rule }) => rule),
      })),
    }),
  );
  const file = path.join(work, `${name}.test.yaml`);
  writeFileSync(
    file,
    yaml.dump({ rule_files: [rules], evaluation_interval: '1m', tests: testGroups }),
  );
  const result = await promisify(execFile)(PROMTOOL, ['test', 'rules', file]).then(
    (r) => ({ ...r, ok: true }),
    (error: { stdout: string; stderr: string }) => ({ ...error, ok: false }),
  );
  return { ok: result.ok, output: `${result.stdout}${result.stderr}` };
}
