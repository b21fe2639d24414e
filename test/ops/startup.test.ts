import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { freePort, isListening, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/** Everything production requires, with believable values; each test removes or spoils one. */
async function productionEnv(): Promise<Record<string, string>> {
  return {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(await freePort()),
    INTERNAL_PORT: String(await freePort()),
    // Nothing listens there: a start-up that got as far as the database would hang or fail later.
    DATABASE_URL: 'postgres://sw:secret@127.0.0.1:9/sw_status',
    PUBLIC_BASE_URL: 'https://hooks.example.com',
    SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com',
    SIGNALWIRE_SIGNING_KEYS: 'PSK_production_signing_key_0123456789',
    CALLBACK_TOKEN_SECRET: 'production-callback-token-secret-0123456789',
    API_TOKENS: 'production-api-token-0123456789',
  };
}

const running: ServiceProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((service) => service.kill()));
});

async function start(env: Record<string, string>) {
  const service = startService(env);
  running.push(service);
  const started = Date.now();
  const { code } = await service.exited;
  return { code, ms: Date.now() - started, stdout: service.stdout(), stderr: service.stderr() };
}

describe('start-up with NODE_ENV=production', () => {
  test('When CALLBACK_TOKEN_SECRET is missing, then the process exits 1 at once naming it, before any database or listener', async () => {
    const env = await productionEnv();
    delete env.CALLBACK_TOKEN_SECRET;
    // A "database" that counts who connects, and hangs up on them: "before any database" is
    // seen, not inferred from how soon the process exits.
    let connections = 0;
    const database = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => database.listen(0, '127.0.0.1', resolve));
    const { port } = database.address() as AddressInfo;
    env.DATABASE_URL = `postgres://sw:secret@127.0.0.1:${port}/sw_status`;
    const result = await start(env).finally(
      () => new Promise((resolve) => database.close(resolve)),
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('CALLBACK_TOKEN_SECRET: required when NODE_ENV=production');
    // Only the missing variable is named, plainly: no stack trace, no log lines, nothing started.
    for (const other of [
      'DATABASE_URL',
      'API_TOKENS',
      'SIGNALWIRE_SIGNING_KEYS',
      'PUBLIC_BASE_URL',
    ]) {
      expect(result.stderr).not.toContain(other);
    }
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stdout).toBe('');
    expect(connections).toBe(0);
    expect(await isListening(Number(env.PORT))).toBe(false);
    // tsx's start-up dominates (2–4 s here, more on a loaded machine); the check itself takes
    // no time. What "at once" rules out — the database or a listener first — is checked above;
    // this bounds only a hang, below the test's own timeout.
    expect(result.ms).toBeLessThan(25_000);
  }, 40_000);

  test("When the example Secret's REPLACE_ME placeholders are left in, then the refusal says so plainly, not as [redacted]", async () => {
    // Secrets are erased from what a failed start prints, the placeholder too when it is one:
    // the refusal names the variable without quoting it.
    const env = await productionEnv();
    env.API_TOKENS = 'REPLACE_ME';
    env.CALLBACK_TOKEN_SECRET = 'REPLACE_ME';
    // A password that is no word of the messages (a password "secret" erases the word).
    env.DATABASE_URL = 'postgres://sw:Pw-6f1c2a9e@127.0.0.1:9/sw_status';
    const result = await start(env);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      'API_TOKENS: still holds the placeholder of the example Secret; set the real value',
    );
    expect(result.stderr).toContain(
      'CALLBACK_TOKEN_SECRET: still holds the placeholder of the example Secret; set the real value',
    );
    expect(result.stderr).not.toContain('[redacted]');
  });

  test('When nothing is configured, then every development default is refused by name', async () => {
    const result = await start({ NODE_ENV: 'production', PORT: String(await freePort()) });
    expect(result.code).toBe(1);
    for (const name of [
      'DATABASE_URL',
      'SIGNALWIRE_SPACE_URL',
      'SIGNALWIRE_SIGNING_KEYS',
      'CALLBACK_TOKEN_SECRET',
      'API_TOKENS',
      'PUBLIC_BASE_URL',
    ]) {
      expect(result.stderr).toContain(`${name}: required when NODE_ENV=production`);
    }
    expect(result.stderr).not.toMatch(/^\s+at /m);
    // No embedded PostgreSQL was started in its place.
    expect(result.stdout).toBe('');
  });

  test('When a value is malformed, then the process exits 1 naming the variable', async () => {
    const env = { ...(await productionEnv()), SHUTDOWN_DELAY_MS: 'soon' };
    const result = await start(env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/SHUTDOWN_DELAY_MS: /);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});
