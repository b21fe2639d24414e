import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort } from '../src/db/free-port';
import { basicAuthHeader } from '../src/signalwire/basic-auth';
import { signFormParams, signJsonBody } from '../src/signalwire/signing';
import { startBenchPostgres } from './lib/database';
import type { BenchPostgres } from './lib/database';
import { cpuTicks, startServer } from './lib/processes';
import { BENCH_PUBLIC_BASE_URL, BENCH_SIGNING_KEY } from './lib/request-pool';
import { swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:adversarial` (and the last part of `npm run bench`): what the worst bodies
 * an attacker can send cost sw-status, next to what a normal callback costs, in the same run
 * against the same server (src/main.ts in production mode, real PostgreSQL). Issue 9: one
 * 64 KiB body of `a&a&a…` held the event loop for 7.4 s and 190 KB to the send proxy for 75 s.
 *
 * Each scenario sends its request one at a time over a keep-alive connection; the cost is the
 * server process's CPU time per request (utime + stime from /proc) and the latency. The
 * ratio of the costliest adversarial scenario to the normal callback is the figure to watch.
 *
 * Env: BENCH_ADVERSARIAL_REQUESTS (300 per scenario), BENCH_DATABASE_URL as for the bench.
 */

const REQUESTS = Number(process.env.BENCH_ADVERSARIAL_REQUESTS ?? 300);
const WARMUP = Math.max(20, Math.round(REQUESTS / 5));
const CALLBACK_LIMIT = 64 * 1024;
const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTbench');

interface BenchRequest {
  listener: 'public' | 'internal';
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body: string;
}

interface Scenario {
  name: string;
  /** What the service answers: checked, so a scenario measures what it says. */
  expect: number;
  adversarial: boolean;
  request(): BenchRequest;
}

export interface ScenarioResult {
  name: string;
  status: number;
  body_bytes: number;
  cpu_ms_per_request: number;
  mean_ms: number;
  p99_ms: number;
  cpu_ratio_to_normal: number;
}

export interface AdversarialResults {
  requests_per_scenario: number;
  scenarios: ScenarioResult[];
  /** The costliest adversarial scenario, CPU per request relative to a normal callback. */
  worst: WorstCase;
  /** The same among the bodies refused (what anyone can send without a signing key). */
  worst_refused: WorstCase;
}

interface WorstCase {
  name: string;
  cpu_ratio_to_normal: number;
  latency_ratio_to_normal: number;
}

function form(path: string, fields: Array<[string, string]>, signature?: string): BenchRequest {
  return {
    listener: 'public',
    method: 'POST',
    path,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(signature !== undefined && { 'x-signalwire-signature': signature }),
    },
    body: new URLSearchParams(fields).toString(),
  };
}

function signedForm(fields: Array<[string, string]>): BenchRequest {
  const path = '/callbacks/cxml';
  return form(
    path,
    fields,
    signFormParams(BENCH_SIGNING_KEY, BENCH_PUBLIC_BASE_URL + path, fields),
  );
}

function callbackFields(): Array<[string, string]> {
  return [
    ['MessageSid', randomUUID()],
    ['MessageStatus', 'delivered'],
    ['AccountSid', PROJECT],
    ['From', '+15551234567'],
    ['To', '+15557654321'],
    ['Body', 'Your verification code is 123456'],
    ['NumMedia', '0'],
    ['NumSegments', '1'],
  ];
}

function raw(
  listener: BenchRequest['listener'],
  path: string,
  contentType: string,
  body: string,
  headers: Record<string, string> = {},
): BenchRequest {
  return {
    listener,
    method: 'POST',
    path,
    headers: { 'content-type': contentType, ...headers },
    body,
  };
}

const repeatedKeys = (bytes: number): string => 'a&'.repeat(Math.floor(bytes / 2));
const stall = repeatedKeys(CALLBACK_LIMIT);
const deepJson = '['.repeat(CALLBACK_LIMIT);

const SCENARIOS: Scenario[] = [
  {
    name: 'normal callback (signed form, stored)',
    expect: 200,
    adversarial: false,
    request: () => signedForm(callbackFields()),
  },
  {
    name: 'normal callback (signed JSON, stored)',
    expect: 200,
    adversarial: false,
    request: () => {
      const path = '/callbacks/native';
      const body = JSON.stringify({
        id: randomUUID(),
        status: 'delivered',
        to: '+15557654321',
        from: '+15551234567',
        timestamp: new Date().toISOString(),
      });
      return raw('public', path, 'application/json', body, {
        'x-signalwire-signature': signJsonBody(
          BENCH_SIGNING_KEY,
          BENCH_PUBLIC_BASE_URL + path,
          body,
        ),
      });
    },
  },
  {
    name: '64 KiB a&a&… without credentials (the reported 7.4 s stall)',
    expect: 401,
    adversarial: true,
    request: () => raw('public', '/callbacks/cxml', 'application/x-www-form-urlencoded', stall),
  },
  {
    name: '64 KiB a&a&… with a signature header',
    expect: 413,
    adversarial: true,
    request: () =>
      raw('public', '/callbacks/cxml', 'application/x-www-form-urlencoded', stall, {
        'x-signalwire-signature': 'forged',
      }),
  },
  {
    name: '1,000 parameters, signed (the most a form may hold, stored)',
    expect: 200,
    adversarial: true,
    request: () => {
      const fields = callbackFields();
      for (let i = fields.length; i < 1000; i++) fields.push(['Extra', String(i)]);
      return signedForm(fields);
    },
  },
  {
    name: '64 KiB form, 999 parameters, forged signature',
    expect: 403,
    adversarial: true,
    request: () => {
      const fields = callbackFields();
      const filler = 'x'.repeat(50);
      while (fields.length < 999) fields.push([`F${fields.length}`, filler]);
      return form('/callbacks/cxml', fields, 'Zm9yZ2VkIHNpZ25hdHVyZSE=');
    },
  },
  {
    name: '64 KiB JSON nested [[[[… with a signature header',
    expect: 400,
    adversarial: true,
    request: () =>
      raw('public', '/callbacks/native', 'application/json', deepJson, {
        'x-signalwire-signature': 'forged',
      }),
  },
  {
    name: '55 KiB JSON, 2,500 keys, signed (stored)',
    expect: 200,
    adversarial: true,
    request: () => {
      const path = '/callbacks/native';
      const value: Record<string, string> = { id: randomUUID(), status: 'sent' };
      for (let i = 0; i < 2500; i++) value[`k${i}`] = 'v'.repeat(12);
      const body = JSON.stringify(value);
      return raw('public', path, 'application/json', body, {
        'x-signalwire-signature': signJsonBody(
          BENCH_SIGNING_KEY,
          BENCH_PUBLIC_BASE_URL + path,
          body,
        ),
      });
    },
  },
  {
    name: 'send proxy: 190 KB a&a&… (the reported 75 s stall)',
    expect: 413,
    adversarial: true,
    request: () =>
      raw(
        'internal',
        `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
        'application/x-www-form-urlencoded',
        repeatedKeys(190_000),
        { authorization: AUTH },
      ),
  },
  {
    name: 'send proxy: 250 KiB JSON nested [[[[…',
    expect: 400,
    adversarial: true,
    request: () =>
      raw('internal', '/api/messaging/messages', 'application/json', '['.repeat(250 * 1024), {
        authorization: AUTH,
      }),
  },
];

/** Runs every scenario against one sw-status process on `postgres`. */
export async function runAdversarial(
  postgres: BenchPostgres,
  log: (line: string) => void,
): Promise<AdversarialResults> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-adversarial-'));
  const databaseUrl = await postgres.createDatabase();
  const internalPort = await freePort();
  const server = await startServer(
    'src/main.ts',
    await freePort(),
    swStatusEnv(databaseUrl, internalPort, path.join(work, 'spool')),
  );
  const ports = { public: server.port, internal: internalPort };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const measured: Array<Omit<ScenarioResult, 'cpu_ratio_to_normal'>> = [];
    for (const scenario of SCENARIOS) {
      for (let i = 0; i < WARMUP; i++) await send(agent, ports, scenario.request());
      // Requests are built before the clock starts: signing is the client's cost.
      const requests = Array.from({ length: REQUESTS }, () => scenario.request());
      const latencies: number[] = [];
      let status = 0;
      const ticks = cpuTicks(server.pid);
      for (const req of requests) {
        const started = performance.now();
        status = await send(agent, ports, req);
        latencies.push(performance.now() - started);
        if (status !== scenario.expect) {
          throw new Error(`${scenario.name}: answered ${status}, expected ${scenario.expect}`);
        }
      }
      const cpuMs = (cpuTicks(server.pid) - ticks) * 10; // USER_HZ = 100
      latencies.sort((a, b) => a - b);
      const result = {
        name: scenario.name,
        status,
        body_bytes: Buffer.byteLength(requests[0]!.body),
        cpu_ms_per_request: round(cpuMs / REQUESTS, 3),
        mean_ms: round(latencies.reduce((sum, ms) => sum + ms, 0) / latencies.length, 3),
        p99_ms: round(latencies[Math.floor(latencies.length * 0.99)]!, 3),
      };
      measured.push(result);
      log(
        `${scenario.name.padEnd(66)} ${String(status)}  ${String(result.body_bytes).padStart(7)} B  ` +
          `CPU ${result.cpu_ms_per_request.toFixed(3).padStart(7)} ms/req  ` +
          `mean ${result.mean_ms.toFixed(3).padStart(7)} ms  p99 ${result.p99_ms.toFixed(3).padStart(7)} ms`,
      );
    }
    const normal = measured[0]!;
    const scenarios = measured.map((result) => ({
      ...result,
      cpu_ratio_to_normal: round(result.cpu_ms_per_request / normal.cpu_ms_per_request, 2),
    }));
    const worstOf = (picked: ScenarioResult[]): WorstCase => {
      const worst = picked.reduce((a, b) =>
        b.cpu_ratio_to_normal > a.cpu_ratio_to_normal ? b : a,
      );
      return {
        name: worst.name,
        cpu_ratio_to_normal: worst.cpu_ratio_to_normal,
        latency_ratio_to_normal: round(worst.mean_ms / normal.mean_ms, 2),
      };
    };
    const adversarial = scenarios.filter((_, index) => SCENARIOS[index]!.adversarial);
    return {
      requests_per_scenario: REQUESTS,
      scenarios,
      worst: worstOf(adversarial),
      worst_refused: worstOf(adversarial.filter((result) => result.status !== 200)),
    };
  } finally {
    agent.destroy();
    await server.stop();
    await postgres.dropDatabase(databaseUrl);
    rmSync(work, { recursive: true, force: true });
  }
}

/** The summary lines: the costliest body, and the costliest one anyone may send. */
export function logWorst(results: AdversarialResults, log: (line: string) => void): void {
  for (const [label, worst] of [
    ['worst adversarial body', results.worst],
    ['worst refused body', results.worst_refused],
  ] as const) {
    log(
      `${label}: ${worst.name}: ${worst.cpu_ratio_to_normal}× the CPU of a normal callback ` +
        `(${worst.latency_ratio_to_normal}× its latency)`,
    );
  }
}

function send(
  agent: http.Agent,
  ports: Record<BenchRequest['listener'], number>,
  req: BenchRequest,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        host: '127.0.0.1',
        port: ports[req.listener],
        method: req.method,
        path: req.path,
        headers: { ...req.headers, 'content-length': Buffer.byteLength(req.body) },
        agent,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    // A refusal before the body was read closes the connection under the rest of the body.
    outgoing.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error),
    );
    outgoing.end(req.body);
  });
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

async function main(): Promise<void> {
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  const postgres = await startBenchPostgres();
  try {
    log(
      `adversarial bodies, ${REQUESTS} requests each, one at a time (${postgres.source} PostgreSQL)`,
    );
    const results = await runAdversarial(postgres, log);
    logWorst(results, log);
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    const file = path.join(
      dir,
      `adversarial-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    );
    writeFileSync(
      file,
      `${JSON.stringify({ date: new Date().toISOString(), node: process.version, ...results }, null, 2)}\n`,
    );
    log(`written: ${path.relative(process.cwd(), file)}`);
  } finally {
    await postgres.close();
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
