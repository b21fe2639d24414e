/**
 * The metric names a PromQL expression reads. Not a full PromQL parser, but enough for the
 * expressions of our dashboards and rules: strings, label matchers, range and subquery
 * brackets and grouping clauses are removed, then every identifier that is not a function
 * call, a keyword or part of a number or duration is a metric name.
 */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan']);

export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = stripped.slice(match.index + match[0].length).trimStart();
    if (rest.startsWith('(') || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names];
}

/** The names of the samples in a Prometheus text exposition. */
export function servedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (name) names.add(name);
  }
  return names;
}

/**
 * Labels Prometheus adds to every scraped series from its target (the Prometheus Operator's
 * ServiceMonitor: the pod's namespace, pod, service, endpoint, container; job and instance):
 * an expression may read them although /metrics never serves them.
 */
export const TARGET_LABELS = new Set([
  'namespace',
  'pod',
  'service',
  'endpoint',
  'container',
  'job',
  'instance',
]);

/** One label an expression reads from one metric: in a matcher, or in a by() grouping. */
export interface LabelUse {
  metric: string;
  label: string;
  /** The value an `=` matcher asks for (undefined for `!=`, `=~`, `!~` and groupings). */
  equals?: string;
}

/** The argument of the parenthesis that opens at `open`: its text up to the matching `)`. */
function parenthesised(expr: string, open: number): string {
  let depth = 0;
  for (let i = open; i < expr.length; i++) {
    if (expr[i] === '(') depth++;
    else if (expr[i] === ')' && --depth === 0) return expr.slice(open + 1, i);
  }
  return expr.slice(open + 1);
}

/**
 * The labels an expression reads, per metric: every label matcher (`name{label="v"}`) and every
 * label a `by (…)` grouping keeps, for each metric its aggregation reads. Target labels are left
 * out, as are labels naming a Grafana variable's value in a matcher (`$namespace`) only as values.
 */
export function labelUses(expr: string): LabelUse[] {
  const uses: LabelUse[] = [];
  for (const match of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    for (const matcher of match[2]!.matchAll(
      /([a-zA-Z_]\w*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"/g,
    )) {
      if (TARGET_LABELS.has(matcher[1]!)) continue;
      uses.push({
        metric: match[1]!,
        label: matcher[1]!,
        equals: matcher[2] === '=' && !matcher[3]!.includes('$') ? matcher[3] : undefined,
      });
    }
  }
  for (const match of expr.matchAll(/\bby\s*\(([^)]*)\)\s*\(/g)) {
    const argument = parenthesised(expr, match.index + match[0].length - 1);
    const labels = match[1]!
      .split(',')
      .map((label) => label.trim())
      .filter((label) => label !== '' && !TARGET_LABELS.has(label));
    for (const metric of metricNames(argument)) {
      for (const label of labels) uses.push({ metric, label });
    }
  }
  return uses;
}

/** Per metric name in a Prometheus text exposition: each label it is served with, and its values. */
export function servedLabels(exposition: string): Map<string, Map<string, Set<string>>> {
  const served = new Map<string, Map<string, Set<string>>>();
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    if (!match) continue;
    const labels = served.get(match[1]!) ?? new Map<string, Set<string>>();
    served.set(match[1]!, labels);
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      const values = labels.get(pair[1]!) ?? new Set<string>();
      labels.set(pair[1]!, values);
      values.add(pair[2]!);
    }
  }
  return served;
}

/**
 * The uses /metrics does not serve, as `metric{label}` or `metric{label="value"}`: a label the
 * metric is never served with, or an `=` value none of its samples has.
 */
export function unservedLabelUses(uses: LabelUse[], exposition: string): string[] {
  const served = servedLabels(exposition);
  const missing = new Set<string>();
  for (const { metric, label, equals } of uses) {
    const values = served.get(metric)?.get(label);
    if (!values) missing.add(`${metric}{${label}}`);
    else if (equals !== undefined && !values.has(equals)) {
      missing.add(`${metric}{${label}="${equals}"}`);
    }
  }
  return [...missing].sort();
}
