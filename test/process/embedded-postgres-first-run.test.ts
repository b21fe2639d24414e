import {
  chownSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { ROOT_DATA_BASE } from '../../src/db/embedded-postgres';
import { eventually } from '../helpers/eventually';
import type { ServiceProcess } from '../ops/service-process';
import { firstRun, listening, removeLinkedData, startedDataDir, stop } from './support/first-run';

/**
 * A new user's first hour with the embedded PostgreSQL: `npm start` as a person runs it, in a
 * clone under a mode-700 home, under a hardened umask, after a power loss.
 */

jest.setTimeout(120_000);

const scratch: string[] = [];
const running: ServiceProcess[] = [];
const asRoot = process.getuid?.() === 0;
const { checkout, privateHome, npmStart } = firstRun(scratch, running);

/** A checkout in `dir` below a private home, its data (below ROOT_DATA_BASE) removed after. */
function checkoutAt(dir: string): string {
  inPrivateHomes.push(dir);
  return firstRun(scratch, running).checkoutAt(dir);
}

const inPrivateHomes: string[] = [];

afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  for (const dir of inPrivateHomes) removeLinkedData(dir);
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  try {
    rmdirSync(ROOT_DATA_BASE); // only when nothing else is in it
  } catch {
    // someone else's data is there, or it never existed
  }
});

/** The README's first send, through the send proxy to the built-in simulator. */
async function send(internal: number): Promise<string> {
  const res = await fetch(
    `http://127.0.0.1:${internal}/api/laml/2010-04-01/Accounts/project/Messages.json`,
    {
      method: 'POST',
      headers: {
        Authorization: `Basic ${Buffer.from('project:token').toString('base64')}`,
        'Content-Type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        To: '+15551230000',
        From: '+15559876543',
        Body: 'Hello from sw-status',
      }).toString(),
    },
  );
  expect(res.status).toBe(201);
  return ((await res.json()) as { sid: string }).sid;
}

async function readBack(internal: number, sid: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${internal}/v1/messages/${sid}`, {
    headers: { Authorization: 'Bearer dev-token' },
  });
  await res.arrayBuffer();
  return res.status;
}

/** npm start in `dir`, one message sent and stored, stopped: the sid and the data's place. */
async function firstSession(dir: string): Promise<{ sid: string; dataDir: string }> {
  const { service, internal } = await npmStart(dir);
  await listening(service);
  const dataDir = startedDataDir(service);
  scratch.push(path.dirname(dataDir));
  const sid = await send(internal);
  await eventually(async () => (await readBack(internal, sid)) === 200, 'stored');
  await stop(service);
  return { sid, dataDir };
}

(asRoot ? test : test.skip)(
  'When root renames a checkout that sits in a mode-700 home, then the next npm start opens the same database (the one .data/postgres links to) and the messages sent before are still there',
  async () => {
    const home = privateHome(); // data goes below /var/lib/sw-status
    const before = checkoutAt(path.join(home, 'sw-status'));
    const first = await firstSession(before);

    // `mv ~/sw-status ~/sw-status-renamed` (or a rename of the project folder in a file manager).
    const after = path.join(home, 'sw-status-renamed');
    renameSync(before, after);
    inPrivateHomes.push(after);
    const second = await npmStart(after);
    await listening(second.service);
    const secondDataDir = startedDataDir(second.service);
    scratch.push(path.dirname(secondDataDir));
    const status = await readBack(second.internal, first.sid);
    await stop(second.service);

    expect({
      link: readlinkSync(path.join(after, '.data', 'postgres')),
      started: secondDataDir,
      message: status,
    }).toEqual({ link: first.dataDir, started: first.dataDir, message: 200 });
  },
);

(asRoot ? test : test.skip)(
  'When root deletes a checkout in a mode-700 home and clones afresh at the same path, then npm start makes a new, empty database instead of reopening the deleted clone’s',
  async () => {
    const dir = path.join(privateHome(), 'sw-status');
    checkoutAt(dir);
    const first = await firstSession(dir);

    // `rm -rf ~/sw-status && git clone … ~/sw-status`: nothing of the old clone is left in it.
    rmSync(dir, { recursive: true, force: true });
    checkoutAt(dir);
    const second = await npmStart(dir);
    await listening(second.service);
    const secondDataDir = startedDataDir(second.service);
    scratch.push(path.dirname(secondDataDir));
    const status = await readBack(second.internal, first.sid);
    await stop(second.service);
    expect({ status, sameDataDir: secondDataDir === first.dataDir }).toEqual({
      status: 404,
      sameDataDir: false,
    });
  },
);

(asRoot ? test : test.skip)(
  'When root runs npm start under a umask of 027 (a CIS-hardened host), then the embedded PostgreSQL is created and the service listens',
  async () => {
    const cwd = checkout();
    const { service } = await npmStart(cwd, ['sh', '-c', 'umask 027 && exec setsid "$0" "$@"']);
    await listening(service);
    scratch.push(path.dirname(startedDataDir(service)));
    await stop(service);
  },
);

(asRoot ? test : test.skip)(
  'When root runs npm start under a umask of 077 in a mode-700 home, then the data directory made below /var/lib/sw-status is enterable by the postgres user and the service listens',
  async () => {
    const dir = checkoutAt(path.join(privateHome(), 'sw-status'));
    const { service } = await npmStart(dir, ['sh', '-c', 'umask 077 && exec setsid "$0" "$@"']);
    await listening(service);
    const dataDir = startedDataDir(service);
    scratch.push(path.dirname(dataDir));
    await stop(service);
    expect({
      base: statSync(ROOT_DATA_BASE).mode & 0o777,
      folder: statSync(path.dirname(dataDir)).mode & 0o777,
    }).toEqual({ base: 0o755, folder: 0o755 });
  },
);

test('When a crash left postmaster.pid and its pid is another PostgreSQL server’s now (another data directory’s), then the start removes it and serves', async () => {
  // Another server of the same OS user: the machine's own PostgreSQL (as root both run as
  // `postgres`), or another checkout's embedded one, which got that pid after a reboot.
  const other = await npmStart(checkout());
  try {
    await listening(other.service);
    const otherPid = readFileSync(
      path.join(startedDataDir(other.service), 'postmaster.pid'),
      'utf8',
    ).split('\n')[0]!;

    const cwd = checkout();
    const first = await npmStart(cwd);
    await listening(first.service);
    const dataDir = startedDataDir(first.service);
    const pidFile = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
    await stop(first.service);

    // The power loss: the server never removed its postmaster.pid.
    const lines = pidFile.split('\n');
    lines[0] = otherPid;
    const pidPath = path.join(dataDir, 'postmaster.pid');
    writeFileSync(pidPath, lines.join('\n'), { mode: 0o600 });
    const owner = statSync(dataDir);
    chownSync(pidPath, owner.uid, owner.gid);

    const second = await npmStart(cwd);
    await listening(second.service);
    await stop(second.service);
  } finally {
    await stop(other.service);
  }
});
