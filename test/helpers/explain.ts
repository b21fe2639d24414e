import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import type { QueryResult } from 'pg';
import type { Db } from '../../src/db/database';

/** One node of `EXPLAIN (ANALYZE, FORMAT JSON)`, the fields the cost tests read. */
export interface PlanNode {
  'Relation Name'?: string;
  'Index Name'?: string;
  'Node Type'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

/** The rows of `messages` (table or index) a plan touched: returned, filtered out or rechecked. */
export function rowsRead(node: PlanNode): number {
  const own =
    node['Relation Name'] === 'messages' || node['Index Name']?.startsWith('messages_')
      ? ((node['Actual Rows'] ?? 0) +
          (node['Rows Removed by Filter'] ?? 0) +
          (node['Rows Removed by Index Recheck'] ?? 0)) *
        (node['Actual Loops'] ?? 1)
      : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsRead(child), 0);
}

/** The node types of a plan, depth first. */
export function nodeTypes(node: PlanNode): string[] {
  return [node['Node Type'] ?? '', ...(node.Plans ?? []).flatMap(nodeTypes)];
}

/**
 * EXPLAIN (ANALYZE) of every statement `run` sends, in order: each is explained, then run as
 * sent, so code that reads one statement's answer to choose the next runs as it would.
 */
export async function explainEach(
  url: string,
  run: (db: Db) => Promise<unknown>,
): Promise<PlanNode[]> {
  const plans: PlanNode[] = [];
  await explainWith(url, run, async (query, text, values) => {
    const result = await query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values);
    plans.push((result.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan);
    return query(text, values);
  });
  return plans;
}

/**
 * EXPLAIN (ANALYZE) of the first statement `run` sends, whatever builds it: `run` gets a Kysely
 * of its own on the database at `url` whose first query is sent prefixed with EXPLAIN and
 * answers `rows` (what the caller's code expects back).
 */
export async function explainFirst(
  url: string,
  run: (db: Db) => Promise<unknown>,
  rows: unknown[] = [],
): Promise<PlanNode> {
  let plan: PlanNode | undefined;
  await explainWith(url, run, async (query, text, values) => {
    if (plan !== undefined) return query(text, values);
    const result = await query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values);
    plan = (result.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan;
    return { ...result, rows };
  });
  if (!plan) throw new Error('no statement explained');
  return plan;
}

type Send = (text: string, values?: unknown) => Promise<QueryResult>;

/** Runs `run` on a Kysely of its own at `url` whose text statements go through `intercept`. */
async function explainWith(
  url: string,
  run: (db: Db) => Promise<unknown>,
  intercept: (query: Send, text: string, values: unknown) => Promise<QueryResult>,
): Promise<void> {
  const pool = new Pool({ connectionString: url, max: 1 });
  // An idle connection ended from outside (a test ending its database's sessions, a server
  // restarting) makes the pool emit 'error': unheard, that kills the whole test file. Its next
  // statement gets a connection of its own, or fails on its own.
  pool.on('error', () => undefined);
  // The pool hands the same client out again for each statement: it is wrapped once.
  const intercepted = new WeakSet<object>();
  const wrapped = {
    connect: async () => {
      const client = await pool.connect();
      if (intercepted.has(client)) return client;
      intercepted.add(client);
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<QueryResult>;
      (client as unknown as { query: unknown }).query = async (text: unknown, values?: unknown) =>
        typeof text === 'string' ? intercept(query, text, values) : query(text, values);
      return client;
    },
    end: () => pool.end(),
  };
  const db = new Kysely<never>({
    dialect: new PostgresDialect({ pool: wrapped as never }),
  }) as unknown as Db;
  try {
    await run(db);
  } finally {
    await db.destroy();
  }
}
