import { execFile } from 'node:child_process';
import { parse } from 'pg-connection-string';
import { loadConfig, redactSecrets } from '../../src/config';
import { cliDatabaseUrl } from '../../src/db/cli-database-url';
import { REPO_ROOT } from '../ops/service-process';
import { configProblems } from '../helpers/config-problems';

describe('DATABASE_URL and DATABASE_READ_URL', () => {
  // node-postgres would fail at its first connection with a bare "Invalid URL": the pod would
  // run, never ready, with nothing naming the variable.
  test.each([
    ['DATABASE_URL', 'postgres://sw:hunter2secret@db.internal:99999/sw'],
    ['DATABASE_READ_URL', 'postgres://sw:hunter2secret@[db.internal/sw'],
  ])(
    'When %s is one node-postgres cannot read, then start-up refuses it without echoing it',
    (name, value) => {
      const found = configProblems({ [name]: value });
      expect(found).toEqual([expect.stringMatching(new RegExp(`^${name}: `))]);
      expect(found.join('\n')).not.toContain('hunter2secret');
    },
  );

  test.each([
    'postgres://sw:pw@db.internal:5432/sw?sslmode=verify-full',
    'postgresql://sw@/sw?host=/var/run/postgresql',
    'postgres://sw:p%20w@db.internal/sw',
    'postgres://sw:p w@db.internal/sw',
    'postgres://db/sw',
    // An @ of the query's own: libpq's user@server names, an application name.
    'postgres:///sw?host=/var/run/postgresql&user=sw_status@sw-db',
    'postgres://sw:pw@db.internal:5432/sw?application_name=sw-status@eu-1',
  ])('When DATABASE_URL is %s, then it is accepted as node-postgres reads it', (url) => {
    expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
  });
});

describe('a % sequence that is no UTF-8', () => {
  // WHATWG URL accepts `Xk9%e2Bt` (a password written raw), but node-postgres decodes the user
  // name, password and host with decodeURIComponent and the database with decodeURI, and threw
  // "URIError: URI malformed" at every connection: a stack trace naming nothing.
  test.each([
    ['DATABASE_URL', 'postgres://sw:Xk9%e2Bt@127.0.0.1:5432/sw_status'],
    ['DATABASE_READ_URL', 'postgres://sw:Xk9%e2Bt@replica.internal/sw_status'],
    ['DATABASE_URL', 'postgres://sw%c3:Xk9-pw@db.internal/sw_status'],
    ['DATABASE_URL', 'postgres://sw:Xk9-pw@db.internal/sw%e2status'],
    ['DATABASE_URL', 'postgres://sw:Xk9%e2Bt@/sw_status?host=/var/run/postgresql'],
  ])(
    'When %s holds one (%s), then start-up refuses it by name, without showing its password',
    (name, value) => {
      // As it is: node-postgres cannot read it.
      expect(() => parse(value)).toThrow(URIError);
      const found = configProblems({ [name]: value });
      expect(found).toEqual([expect.stringMatching(new RegExp(`^${name}: .*percent-encoding`))]);
      expect(found.join('\n')).not.toContain('Xk9');
    },
  );

  test('When the % is written as %25, then the URL is accepted and node-postgres reads the password', () => {
    const url = 'postgres://sw:Xk9%25e2Bt@db.internal/sw_status';
    expect(parse(loadConfig({ DATABASE_URL: url }).databaseUrl!).password).toBe('Xk9%e2Bt');
  });
});

describe('a password that ends the URL early', () => {
  // A generated password holding '@' and '#', written into a Secret without percent-encoding:
  // the URL still parses, with host `zqhorsefrag` — a piece of the password, which every
  // connection error would then name in the log.
  const PASSWORD = 'Xk9@zqhorsefrag#Bt7';

  test.each([
    ['DATABASE_URL', `postgres://sw_status:${PASSWORD}@db.internal:5432/sw_status`],
    ['DATABASE_READ_URL', `postgres://sw_status:${PASSWORD}@db.internal:5432/sw_status`],
    ['DATABASE_URL', 'postgres://sw_status:Xk9@zqhorse/frag@db.internal/sw_status'],
    ['DATABASE_URL', 'postgres://sw_status:Xk9@zqhorse?frag@db.internal/sw_status'],
    ['HTTPS_PROXY', `http://egress:${PASSWORD}@proxy.internal:3128`],
    ['HTTP_PROXY', 'egress:Xk9@zqhorse/frag@proxy.internal:3128'],
  ])(
    'When %s’s password holds an unencoded #, / or ? after an @, then start-up refuses it, says to percent-encode, and shows no piece of it',
    (name, value) => {
      const found = configProblems({ [name]: value });
      expect(found).toEqual([expect.stringMatching(new RegExp(`^${name}: .*percent-encode`))]);
      expect(found.join('\n')).not.toMatch(/zqhorse|Xk9|Bt7/);
    },
  );

  test('When the password is percent-encoded, then the same URL is accepted and node-postgres reads the whole password', () => {
    const url = `postgres://sw_status:${encodeURIComponent(PASSWORD)}@db.internal:5432/sw_status`;
    const read = parse(loadConfig({ DATABASE_URL: url }).databaseUrl!);
    expect(read).toMatchObject({ host: 'db.internal', password: PASSWORD });
  });

  test('When DATABASE_URL ends in a space (a YAML or .env slip), then it is read as the database meant, not one named "sw_status "', () => {
    const config = loadConfig({
      DATABASE_URL: ' postgres://sw_status:pw-0123456789@db.internal:5432/sw_status \n',
      DATABASE_READ_URL: 'postgres://sw_status:pw-0123456789@replica.internal/sw_status ',
    });
    expect(parse(config.databaseUrl!).database).toBe('sw_status');
    expect(parse(config.databaseReadUrl!).database).toBe('sw_status');
  });

  test('When the command-line tools read DATABASE_URL and NODE_ENV, then white space around them is dropped as the service drops it', () => {
    expect(cliDatabaseUrl({ DATABASE_URL: ' postgres://sw_status@db.internal/sw_status \n' })).toBe(
      'postgres://sw_status@db.internal/sw_status',
    );
    // `production ` is production to the service: the embedded database is refused.
    expect(() => cliDatabaseUrl({ NODE_ENV: 'production ' })).toThrow(
      'DATABASE_URL: required when NODE_ENV=production',
    );
    expect(cliDatabaseUrl({ NODE_ENV: 'development', DATABASE_URL: '' })).toBeUndefined();
    // Blank is no connection string, as at start.
    expect(() => cliDatabaseUrl({ DATABASE_URL: '  ' })).toThrow(
      'DATABASE_URL: must be a postgres:// connection string',
    );
  });

  test('When the migration command (production) is given such a DATABASE_URL, then it refuses it by name without printing a piece of the password', async () => {
    const { code, output } = await new Promise<{ code: number | null; output: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', 'src/db/migrate-cli.ts'],
          {
            cwd: REPO_ROOT,
            timeout: 30_000,
            env: {
              PATH: process.env.PATH ?? '',
              NODE_ENV: 'production',
              DATABASE_URL: `postgres://sw_status:${PASSWORD}@127.0.0.1:9/sw_status`,
            },
          },
          (error, stdout, stderr) =>
            resolve({
              code: error ? ((error as { code?: number }).code ?? 1) : 0,
              output: stdout + stderr,
            }),
        );
      },
    );
    expect(code).toBe(1);
    expect(output).toContain('DATABASE_URL: has a #');
    expect(output).not.toMatch(/zqhorse|Xk9|Bt7/);
  }, 40_000);
});

describe('redactSecrets', () => {
  test('When DATABASE_URL has an @ in its query, then its password is still the one redacted', () => {
    // The userinfo was taken up to the URL's last '@': the query's, so what was "redacted" was
    // `S3cretPass@db.internal:5432/sw?application_name=sw` and never the password alone.
    const env = {
      DATABASE_URL: 'postgres://sw:S3cretPass@db.internal:5432/sw?application_name=sw@pod-1',
      DATABASE_READ_URL: 'postgres://sw:R3aderPass@replica.internal/sw?user=sw@tenant',
    };
    expect(configProblems({ DATABASE_URL: env.DATABASE_URL })).toEqual([]);
    expect(redactSecrets('password S3cretPass, then R3aderPass: rejected', env)).toBe(
      'password [redacted], then [redacted]: rejected',
    );
  });

  test('When text quotes configured secrets, then each is replaced, percent-encoded or not', () => {
    const env = {
      DATABASE_URL: 'postgres://sw:pa%40ssword1@/sw?host=/run/pg',
      DATABASE_READ_URL: 'postgres://db.internal/sw?user=sw&password=readerpass9',
      API_TOKENS: 'api-token-one, api-token-two',
      CALLBACK_TOKEN_SECRET: 'callback-secret-0123456789',
      SIGNALWIRE_SIGNING_KEYS: 'PSK_signing_key_1',
      SIGNALWIRE_CREDENTIALS: 'project-1:rest-token:with-colon',
    };
    const text = [
      env.DATABASE_URL,
      'pa@ssword1',
      env.DATABASE_READ_URL,
      'api-token-two',
      'callback-secret-0123456789',
      'PSK_signing_key_1',
      'project-1:rest-token:with-colon',
    ].join(' | ');
    const redacted = redactSecrets(text, env);
    for (const secret of [
      'pa%40ssword1',
      'pa@ssword1',
      'readerpass9',
      'api-token-two',
      'callback-secret',
      'PSK_signing_key_1',
      'rest-token',
    ]) {
      expect(redacted).not.toContain(secret);
    }
    // What is not secret stays readable.
    expect(redacted).toContain('postgres://sw:[redacted]@/sw?host=/run/pg');
    expect(redacted).toContain('project-1:[redacted]');
  });
});
