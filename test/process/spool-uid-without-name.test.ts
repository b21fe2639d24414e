import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { everyoneCanTraverse } from '../../src/db/embedded-postgres';
import { REPO_ROOT } from '../ops/service-process';

/**
 * A pod may run as a uid of its own (runAsUser) that has no entry in the image's /etc/passwd.
 * When its spool is not writable, the start must still say which directory and how to fix it:
 * os.userInfo() throws for such a uid, which turned the message into an unrelated ENOENT.
 */

jest.setTimeout(60_000);

const asRoot = process.getuid?.() === 0;
const UNNAMED_UID = 54_321;

(asRoot && everyoneCanTraverse(REPO_ROOT) ? test : test.skip)(
  'When the process runs as a uid without a name and its spool is not writable, then the start error names the uid and the directory',
  async () => {
    // Root's own directory, mode 700: the unnamed uid may not write (or enter) it.
    const rootOnly = mkdtempSync(path.join(tmpdir(), 'spool-unnamed-'));
    try {
      const script = `
        const { openServiceSpool } = require('./src/ingest/ingest.ts');
        const { createLogger } = require('./src/logger.ts');
        openServiceSpool({ dir: ${JSON.stringify(path.join(rootOnly, 'spool'))}, logger: createLogger('silent') })
          .then(() => console.log('opened'), (error) => console.log(String(error.message)));
      `;
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', '-e', script],
        { cwd: REPO_ROOT, uid: UNNAMED_UID, gid: UNNAMED_UID, env: { PATH: process.env.PATH } },
      );
      expect(stdout).toContain(`uid ${UNNAMED_UID} may not write`);
      expect(stdout).toContain(rootOnly);
    } finally {
      rmSync(rootOnly, { recursive: true, force: true });
    }
  },
);
