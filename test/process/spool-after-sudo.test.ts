import { chownSync, rmSync } from 'node:fs';
import path from 'node:path';
import { everyoneCanTraverse } from '../../src/db/embedded-postgres';
import { REPO_ROOT } from '../ops/service-process';
import type { ServiceProcess } from '../ops/service-process';
import { firstRun, listening, stop } from './support/first-run';

/**
 * One `sudo npm start` leaves `.data` and its spool root's: the checkout's owner must be told
 * in one line whose they are and how to take them back, not shown a stack trace.
 */

jest.setTimeout(120_000);

const scratch: string[] = [];
const running: ServiceProcess[] = [];
const asRoot = process.getuid?.() === 0;
// The owner's start runs as `nobody` on this checkout's code (the scratch checkout links to it):
// below a directory others may not enter (a clone in a mode-700 home or `mktemp -d`) it cannot
// load a module, and there is no owner's start to judge.
const nobodyReachesCode = everyoneCanTraverse(REPO_ROOT);
const { checkout, npmStart } = firstRun(scratch, running);

afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

(asRoot && nobodyReachesCode ? test : test.skip)(
  'When npm start was once run with sudo, then npm start as the checkout’s owner exits 1 with one line naming the directory it may not write, its owner and the fix, not a stack trace',
  async () => {
    const cwd = checkout();
    const nobody = { uid: 65534, gid: 65534 };
    chownSync(path.dirname(cwd), nobody.uid, nobody.gid);
    chownSync(cwd, nobody.uid, nobody.gid);
    rmSync(path.join(cwd, '.data'), { recursive: true, force: true }); // a fresh clone's state

    const bySudo = await npmStart(cwd);
    await listening(bySudo.service);
    await stop(bySudo.service);

    const byOwner = await npmStart(cwd, ['runuser', '-u', 'nobody', '--', 'setsid']);
    const { code } = await byOwner.service.exited;
    const said = byOwner.service.stderr().trim();
    expect({
      code,
      lines: said.split('\n').length,
      namesDir: said.includes('.data/spool'),
      namesOwner: said.includes('belongs to root'),
      saysFix: said.includes('sudo chown -R $(id -un) .data'),
    }).toEqual({ code: 1, lines: 1, namesDir: true, namesOwner: true, saysFix: true });
  },
);
