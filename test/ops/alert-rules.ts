import path from 'node:path';
import { K8S_DIR, readObjects } from '../deploy/kustomize';

export interface AlertRule {
  alert: string;
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
