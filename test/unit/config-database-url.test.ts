import { loadConfig, redactSecrets } from '../../src/config';
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
  ])('When DATABASE_URL is %s, then it is accepted as node-postgres reads it', (url) => {
    expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
  });
});

describe('redactSecrets', () => {
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
