import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createFeedSignal } from '../../src/feed/feed-signal';
import type { FeedSignal } from '../../src/feed/feed-signal';
import { createLogger } from '../../src/logger';
import { eventually } from '../helpers/eventually';
import { createTestDatabase, endSessions } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * node-postgres reads the sslrootcert file named in the connection string in `new Client()`,
 * synchronously (README "PostgreSQL over TLS": the file is read at each new connection). The
 * change feed's listening connection was created outside its try, in a `void connect()`: a
 * CA file that is missing (its optional ConfigMap absent, or deleted while the pods run and
 * then the database restarts) was an unhandled rejection, and the process ended. It is a lost
 * connection like any other: the feed polls meanwhile, and the connection comes back with the
 * file. sslmode=disable keeps the test on the plain test PostgreSQL: the file is read all the
 * same.
 */

let dir: string;
let target: TestDatabase;
let signal: FeedSignal | undefined;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-feed-ca-'));
  target = await createTestDatabase(1);
});
afterAll(async () => {
  await signal?.close();
  await target?.destroy();
  await rm(dir, { recursive: true, force: true });
});

/** A logger whose lines' messages the test reads. */
function logLines(): { logger: ReturnType<typeof createLogger>; lines: () => string[] } {
  const written: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void written.push(line) });
  return {
    logger,
    lines: () => written.map((line) => (JSON.parse(line) as { msg: string }).msg),
  };
}

test('When the CA file is missing, then the feed signal keeps trying without a rejection, says so once, and listens once the file is there', async () => {
  const ca = path.join(dir, 'ca.crt');
  const { logger, lines } = logLines();
  signal = createFeedSignal({
    connectionString: `${target.url}?sslmode=disable&sslrootcert=${ca}`,
    logger,
  });
  // (Jest fails the test on an unhandled rejection.)
  await eventually(
    () => lines().some((msg) => msg.includes('cannot open the listening connection')),
    'the failure logged',
  );
  // Several attempts with back-off (100, 200, 400 ms …), one line.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(signal.listening()).toBe(false);
  expect(lines().filter((msg) => msg.includes('cannot open'))).toHaveLength(1);

  await writeFile(ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
  await eventually(() => signal!.listening(), 'listening once the file is there');
});

test('When the CA file goes away while listening and the database restarts, then the feed signal polls and listens again once the file is back', async () => {
  const ca = path.join(dir, 'ca.crt');
  expect(signal!.listening()).toBe(true);
  await copyFile(ca, `${ca}.kept`);
  await rm(ca);
  await endSessions(target.url.split('/').pop()!);
  await eventually(() => !signal!.listening(), 'the connection lost');
  // The feed looks on its own meanwhile (five times a second).
  expect(await signal!.nextLook(5_000)).toBe('look');

  await copyFile(`${ca}.kept`, ca);
  await eventually(() => signal!.listening(), 'listening again');
});
