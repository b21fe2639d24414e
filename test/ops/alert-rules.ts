import path from 'node:path';
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
