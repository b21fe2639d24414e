import { chownSync, rmSync } from 'node:fs';
import path from 'node:path';
import { everyoneCanTraverse } from '../../src/db/embedded-postgres';
import { REPO_ROOT } from '../ops/service-process';
import type { ServiceProcess } from '../ops/service-process';
import { firstRun, listening } from './support/first-run';
import { descendsFrom, processesOf } from './support/processes';

/**
 * The reverse of spool-after-sudo.test.ts: the checkout's owner ran `npm start`
 * (its embedded PostgreSQL data is the owner's), then `sudo npm start` in the same checkout.
 * As root the server runs as the `postgres` user, which may not open the owner's data: the
 * developer should be told in one line whose the data is and what to do, as the other order is.
 */

jest.setTimeout(120_000);

const scratch: string[] = [];
const running: ServiceProcess[] = [];
const asRoot = process.getuid?.() === 0;
const nobodyReachesCode = everyoneCanTraverse(REPO_ROOT);
const { checkout, npmStart } = firstRun(scratch, running);

afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

(asRoot && nobodyReachesCode ? test : test.skip)(
  'When the checkout’s owner ran npm start and then runs it with sudo, then the start exits 1 with one line naming the data directory’s owner and the fix, not PostgreSQL’s "Permission denied"',
  async () => {
    const cwd = checkout();
    const nobody = { uid: 65534, gid: 65534 };
    chownSync(path.dirname(cwd), nobody.uid, nobody.gid);
    chownSync(cwd, nobody.uid, nobody.gid);
    rmSync(path.join(cwd, '.data'), { recursive: true, force: true }); // a fresh clone's state

    const byOwner = await npmStart(cwd, ['runuser', '-u', 'nobody', '--', 'setsid']);
    await listening(byOwner.service);
    // Ctrl-C to the owner's node (runuser is its parent and would die of the signal itself).
    const node = processesOf('node', (arg) => arg.endsWith('src/main.ts')).find((pid) =>
      descendsFrom(pid, byOwner.service.child.pid!),
    )!;
    process.kill(node, 'SIGINT');
    expect((await byOwner.service.exited).code).toBe(0);

    const bySudo = await npmStart(cwd);
    const { code } = await bySudo.service.exited;
    const said = bySudo.service.stderr().trim();
    expect({
      code,
      lines: said.split('\n').length,
      namesOwner: said.includes('nobody'),
      noRawPermissionError: !said.includes('Permission denied'),
      said,
    }).toEqual({ code: 1, lines: 1, namesOwner: true, noRawPermissionError: true, said });
  },
);
