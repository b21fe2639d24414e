import { Client } from 'pg';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';

const withCode = (code: string, message = 'x'): Error =>
  Object.assign(new Error(message), { code });
/** A new connection's own failure, as Node reports it. */
const withConnectCode = (code: string): Error =>
  Object.assign(new Error(`connect ${code}`), { code, syscall: 'connect' });

describe('isDatabaseUnavailable', () => {
  test.each([
    ['a refused connection', withCode('ECONNREFUSED')],
    ['a reset connection', withCode('ECONNRESET')],
    ['a timed-out connection', withCode('ETIMEDOUT')],
    ['an unknown host', withCode('ENOTFOUND')],
    ['no file descriptor left in the process', withConnectCode('EMFILE')],
    ['no file descriptor left on the machine', withConnectCode('ENFILE')],
    ['no local port left', withConnectCode('EADDRNOTAVAIL')],
    ['a Unix socket whose listen queue is full', withConnectCode('EAGAIN')],
    ['a connection failure (class 08)', withCode('08006')],
    ['a refused connection attempt (class 08)', withCode('08001')],
    ['an administrator shutdown', withCode('57P01')],
    ['a crash shutdown', withCode('57P02')],
    ['a server still starting', withCode('57P03')],
    ['a standby after failover', withCode('25006')],
    ['too many connections (class 53)', withCode('53300')],
    ['a full disk (class 53)', withCode('53100')],
    ['a role that may not log in (class 28)', withCode('28000')],
    ['a rotated password (class 28)', withCode('28P01')],
    ['a database that does not exist', withCode('3D000')],
    [
      'a database closed to connections',
      withCode('55000', 'database "sw_status" is not currently accepting connections'),
    ],
    ['CONNECT revoked', withCode('42501', 'permission denied for database "sw_status"')],
    ['the pool connect timeout', new Error('timeout exceeded when trying to connect')],
    ['a socket closed under a query', new Error('Connection terminated unexpectedly')],
    [
      'a socket closed while connecting',
      new Error('Connection terminated due to connection timeout'),
    ],
    [
      'every address refusing',
      new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')]),
    ],
  ])('When the error is %s, then the database is unavailable', (_what, error) => {
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  test.each([
    ['a unique violation', withCode('23505')],
    ['a bad character in jsonb', withCode('22P05')],
    ['a deadlock', withCode('40P01')],
    ['a check violation', withCode('23514')],
    ['a statement not allowed on a table', withCode('42501', 'permission denied for table x')],
    ['a sequence not yet used', withCode('55000', 'currval of sequence "s" is not yet defined')],
    ['a plain bug', new TypeError('cannot read properties of undefined')],
    [
      'a folder that is not there (not a connection)',
      Object.assign(new Error('ENOENT: no such file or directory, scandir'), {
        code: 'ENOENT',
        syscall: 'scandir',
      }),
    ],
    [
      'a file that could not be opened for want of descriptors (not a connection)',
      Object.assign(new Error('EMFILE: too many open files, open'), {
        code: 'EMFILE',
        syscall: 'open',
      }),
    ],
    ['not an error at all', 'ECONNREFUSED'],
    ['nothing', undefined],
  ])('When the error is %s, then it belongs to the write, not to the database', (_what, error) => {
    expect(isDatabaseUnavailable(error)).toBe(false);
  });
});

test('When DATABASE_URL names a Unix socket whose file is gone (the server down or restarting), then the real connect error reads as the database unavailable', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-no-socket-'));
  try {
    const client = new Client({ host: dir, port: 5432, user: 'u', database: 'd' });
    const failure = await client.connect().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((failure as { code?: unknown }).code).toBe('ENOENT');
    expect(isDatabaseUnavailable(failure)).toBe(true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
