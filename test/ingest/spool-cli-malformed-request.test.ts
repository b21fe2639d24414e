import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { freePort } from '../../src/db/free-port';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields } from '../helpers/callbacks';
import { runSpoolCommand } from '../ingest/support/spool-command';

/**
 * The holder of a spool (the service itself, or `spool replay`) answers one JSON line per
 * connection on its socket (src/process/instance-lock.ts). A request whose `op` is an object
 * String() cannot convert (`{"toString":1}`) made the holder's answer throw outside its try, an
 * unhandled rejection: the holder process died — for the service, ingest with it. Now it is
 * refused as an unknown request, and nothing a handler throws escapes unanswered.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
const logger = createLogger('silent');
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-holder-request-'));
  const spool = await openSpool({ dir, logger });
  await spool.append([
    normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false }),
  ]);
  await spool.close();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function holderSocket(): Promise<string> {
  const record = (await readdir(dir))
    .filter((name) => /^\.lock\.\d{12}$/.test(name))
    .sort()
    .at(-1)!;
  const holder = JSON.parse(await readFile(path.join(dir, record), 'utf8')) as { socket: string };
  return path.join(dir, holder.socket);
}

function send(socketPath: string, line: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(line));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('close', () => resolve(text));
    socket.on('error', () => undefined);
    socket.setTimeout(3_000, () => socket.destroy());
  });
}

test('When a request line names an op String() cannot convert, then the holder refuses it and keeps running (status still answers)', async () => {
  const down = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
  const replay = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/ingest/spool-cli.ts', 'replay', dir, '--timeout', '120'],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: down },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  replay.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => replay.on('exit', resolve));
  try {
    let stdout = '';
    await new Promise<void>((resolve) =>
      replay.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes('waiting for')) resolve();
      }),
    );
    const answer = await send(await holderSocket(), `${JSON.stringify({ op: { toString: 1 } })}\n`);
    expect(JSON.parse(answer)).toMatchObject({ ok: false, code: 'unknown-request' });

    const status = await runSpoolCommand(['status', dir], { DATABASE_URL: down });
    expect({ code: status.code, stderr: status.stderr }).toEqual({ code: 0, stderr: '' });
    expect(status.stdout).toMatch(/is held by .*1 events to replay/);
  } finally {
    replay.kill('SIGTERM');
  }
  // Stopped by the test (143), not dead of an uncaught error.
  expect({ code: await exited, stderr: stderr.slice(0, 300) }).toEqual({ code: 143, stderr: '' });
}, 60_000);
