import fc from 'fast-check';
import { parse } from 'pg-connection-string';
import {
  ConfigError,
  DEV_API_TOKEN,
  ENV_VARIABLES,
  DEV_CALLBACK_TOKEN_SECRET,
  SIMULATOR_SIGNING_KEY,
  cliLogLevel,
  cliStoreBody,
  databaseUrlProblem,
  loadConfig,
  redactSecrets,
  secretValues,
} from '../../src/config';
import type { Config } from '../../src/config';
import { configProblems } from '../helpers/config-problems';

const production = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://db/sw',
  SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com',
  SIGNALWIRE_SIGNING_KEYS: 'PSK_a,PSK_b',
  CALLBACK_TOKEN_SECRET: 'a-production-secret-of-length',
  API_TOKENS: 'api-token-one-0123456789, api-token-two-0123456789',
  PUBLIC_BASE_URL: 'https://hooks.example.com/',
};

describe('loadConfig', () => {
  test('When nothing is set, then local defaults are in force and listed', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      internalPort: 8081,
      host: '::',
      databaseUrl: undefined,
      callbackTokenTtlDays: 30,
      httpKeepAliveTimeoutMs: 65_000,
    });
    expect(config.apiTokens).toEqual([DEV_API_TOKEN]);
    expect(config.signingKeys).toEqual([SIMULATOR_SIGNING_KEY]);
    expect(config.publicBaseUrl).toBe('http://127.0.0.1:8080');
    expect(config.defaultsInForce.length).toBeGreaterThanOrEqual(5);
  });

  test('When npm start runs with the development API token on every interface, then the start log says so and how to keep it local', () => {
    const warning = /HOST unset: listening on every interface with the API token "dev-token"/;
    expect(loadConfig({}).defaultsInForce.join('\n')).toMatch(warning);
    expect(loadConfig({ API_TOKENS: 'dev-token' }).defaultsInForce.join('\n')).toMatch(warning);
    // A HOST of one's own, or tokens of one's own, and there is nothing to say.
    expect(loadConfig({ HOST: '127.0.0.1' }).defaultsInForce.join('\n')).not.toMatch(warning);
    expect(loadConfig({ HOST: '::' }).defaultsInForce.join('\n')).not.toMatch(/HOST unset/);
    expect(
      loadConfig({ API_TOKENS: 'a-token-of-my-own-0123' }).defaultsInForce.join('\n'),
    ).not.toMatch(/HOST unset/);
  });

  test('When production is fully configured, then lists are split and the base URL is trimmed', () => {
    const config = loadConfig(production);
    expect(config.signingKeys).toEqual(['PSK_a', 'PSK_b']);
    expect(config.apiTokens).toEqual(['api-token-one-0123456789', 'api-token-two-0123456789']);
    expect(config.publicBaseUrl).toBe('https://hooks.example.com');
    expect(config.defaultsInForce).toEqual([]);
  });

  test('When CORS_ORIGINS lists origins, then they are kept; a URL with a path is refused', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(
      loadConfig({ CORS_ORIGINS: 'https://dash.example.com, http://localhost:3000' }).corsOrigins,
    ).toEqual(['https://dash.example.com', 'http://localhost:3000']);
    expect(configProblems({ CORS_ORIGINS: 'https://dash.example.com/app' })).toEqual([
      'CORS_ORIGINS: each origin is scheme://host[:port] (no path), or *',
    ]);
    // A scheme in any case (RFC 3986 §3.1): http/cors.ts writes it as a browser does.
    expect(
      configProblems({ CORS_ORIGINS: 'HTTPS://dash.example.com, Http://localhost:3000' }),
    ).toEqual([]);
  });

  test.each(['POSTGRESQL://sw:secret@db.internal:5432/sw', 'Postgres://sw:secret@db.internal/sw'])(
    'When DATABASE_URL and DATABASE_READ_URL are written with the scheme %s, then they are read as node-postgres reads them',
    (url) => {
      expect(parse(url).host).toBe('db.internal');
      const config = loadConfig({ DATABASE_URL: url, DATABASE_READ_URL: url });
      expect(parse(config.databaseUrl!).host).toBe('db.internal');
      expect(parse(config.databaseReadUrl!).host).toBe('db.internal');
      // As the command-line tools check it.
      expect(databaseUrlProblem(url)).toBeUndefined();
    },
  );

  test('When production lacks a secret, then the problem names that variable', () => {
    const { CALLBACK_TOKEN_SECRET: _omitted, ...env } = production;
    expect(configProblems(env)).toEqual([
      'CALLBACK_TOKEN_SECRET: required when NODE_ENV=production',
    ]);
  });

  test('When production allows unsigned callbacks, then it is refused', () => {
    expect(configProblems({ ...production, ALLOW_UNSIGNED_CALLBACKS: 'true' })).toEqual([
      'ALLOW_UNSIGNED_CALLBACKS: must not be true when NODE_ENV=production',
    ]);
  });

  test('When several variables are bad, then there is one line per variable', () => {
    const found = configProblems({
      PORT: 'eighty',
      DATABASE_URL: 'mysql://x',
      PUBLIC_BASE_URL: 'ftp://x',
      STORE_BODY: 'maybe',
    });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual([
      'DATABASE_URL',
      'PORT',
      'PUBLIC_BASE_URL',
      'STORE_BODY',
    ]);
  });

  test('When TRUST_PROXY holds an entry that is no address or subnet, then start-up refuses it by name', () => {
    const found = configProblems({ TRUST_PROXY: '10.0.0.0/8,lb.internal' });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^TRUST_PROXY: expected a hop count.*lb\.internal/);
  });

  test.each([['2'], ['true'], ['false'], ['loopback, 10.0.0.0/8, fd00::/8'], ['10.0.0.1']])(
    'When TRUST_PROXY is %s, then it is accepted',
    (value) => {
      expect(configProblems({ TRUST_PROXY: value })).toEqual([]);
    },
  );

  test('When a variable is set to an empty string, then it counts as unset', () => {
    expect(loadConfig({ PORT: '', API_TOKENS: '' })).toMatchObject({
      port: 8080,
      apiTokens: [DEV_API_TOKEN],
    });
  });
});

test('When a production API token is shorter than 16 characters, then start-up refuses it without echoing it', () => {
  const refused = configProblems({
    ...production,
    API_TOKENS: 'api-token-one-0123456789,fifteen-chars-x',
  });
  expect(refused).toEqual(['API_TOKENS: each token needs at least 16 characters']);
  expect(configProblems({ ...production, API_TOKENS: 'exactly-16-chars' })).toEqual([]);
  // Development keeps accepting short tokens (dev-token itself is one).
  expect(loadConfig({ API_TOKENS: 'tok1' }).apiTokens).toEqual(['tok1']);
});

test('When a production secret still holds the example placeholder, then start-up is refused', () => {
  expect(configProblems({ ...production, API_TOKENS: 'REPLACE_ME' })).toEqual([
    'API_TOKENS: still holds the placeholder of the example Secret; set the real value',
  ]);
});

describe('relay and reconciliation settings', () => {
  test('When nothing is set, then the documented schedules apply, loopback is allowed outside production and reconciliation has no credentials', () => {
    const config = loadConfig({});
    expect(config.relayRetrySchedule).toEqual(
      [10, 60, 300, 1800, 7200, 21600, 43200].map((s) => s * 1000),
    );
    expect(config.reconcileSchedule).toEqual([600, 3600, 21600, 86400].map((s) => s * 1000));
    expect(config).toMatchObject({
      relayTimeoutMs: 5000,
      relayHostConcurrency: 4,
      reconcileRate: 5,
      relayAllowHttp: true,
    });
    expect(config.relayAllowedNetworks).toEqual(['127.0.0.0/8', '::1/128']);
    expect(config.signalwireCredentials.size).toBe(0);
  });

  test('When in production, then relays reach public addresses over https only unless configured', () => {
    const config = loadConfig(production);
    expect(config.relayAllowedNetworks).toEqual([]);
    expect(config.relayAllowHttp).toBe(false);
    const open = loadConfig({
      ...production,
      RELAY_ALLOWED_NETWORKS: '10.0.0.0/8, fd00::/8',
      RELAY_ALLOW_HTTP: 'true',
    });
    expect(open.relayAllowedNetworks).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(open.relayAllowHttp).toBe(true);
    expect(loadConfig({ RELAY_ALLOWED_NETWORKS: 'none' }).relayAllowedNetworks).toEqual([]);
  });

  test('When credentials are given per project, then each project maps to its token (colons in tokens kept)', () => {
    const config = loadConfig({
      SIGNALWIRE_CREDENTIALS: 'p1:PTa, p2:PT:b',
      RECONCILE_SCHEDULE: '500ms,2s',
    });
    expect([...config.signalwireCredentials]).toEqual([
      ['p1', { projectIdAsWritten: 'p1', token: 'PTa' }],
      ['p2', { projectIdAsWritten: 'p2', token: 'PT:b' }],
    ]);
    expect(config.reconcileSchedule).toEqual([500, 2000]);
  });

  test('When signing keys are bound to projects, then each key keeps its project and unbound keys none', () => {
    const config = loadConfig({
      SIGNALWIRE_SIGNING_KEYS: 'p1:PSK_a, p2 : PSK_b ,PSK_c',
    });
    expect(config.signingKeys).toEqual(['PSK_a', 'PSK_b', 'PSK_c']);
    expect(config.signingKeyProjects).toEqual(['p1', 'p2', null]);
  });

  test('When a bound signing key is malformed, then it is named without echoing the key, and the key alone counts as a secret', () => {
    const found = configProblems({ SIGNALWIRE_SIGNING_KEYS: 'PSK_good,p1:, :PSK_secretkey' });
    expect(found).toEqual([
      'SIGNALWIRE_SIGNING_KEYS: each entry must be signing_key or project_id:signing_key',
    ]);
    expect(secretValues({ SIGNALWIRE_SIGNING_KEYS: 'p1:PSK_secretkey' })).toEqual(
      expect.arrayContaining(['p1:PSK_secretkey', 'PSK_secretkey']),
    );
  });

  test('When a binding names its project in capitals, then the project is kept in lower case, as SignalWire writes it', () => {
    const config = loadConfig({
      SIGNALWIRE_SIGNING_KEYS: 'EA108133-D6B3-407C-9536-9FAD8A929A6A:PSK_a',
    });
    expect(config.signingKeyProjects).toEqual(['ea108133-d6b3-407c-9536-9fad8a929a6a']);
  });

  test('When SIGNALWIRE_PROJECT_IDS or SIGNALWIRE_CREDENTIALS name projects in capitals, then they are compared in lower case, as SignalWire writes them, and the credentials go upstream as written', () => {
    const upper = 'EA108133-D6B3-407C-9536-9FAD8A929A6A';
    const config = loadConfig({
      SIGNALWIRE_PROJECT_IDS: `${upper}, P2`,
      SIGNALWIRE_CREDENTIALS: `${upper}:PT_Token_Case_Kept`,
    });
    expect(config.signalwireProjectIds).toEqual([upper.toLowerCase(), 'p2']);
    expect([...config.signalwireCredentials]).toEqual([
      [upper.toLowerCase(), { projectIdAsWritten: upper, token: 'PT_Token_Case_Kept' }],
    ]);
    // One project written in two cases is one project listed twice.
    expect(
      configProblems({ SIGNALWIRE_CREDENTIALS: `${upper}:PT_one,${upper.toLowerCase()}:PT_two` }),
    ).toEqual([`SIGNALWIRE_CREDENTIALS: project ${upper.toLowerCase()} is listed twice`]);
  });

  test('When a key is listed with two bindings, or an entry the wrong way round, then the start is refused naming the projects, never the key', () => {
    const a = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
    const b = '0f6c3b59-6a2d-4a53-9f1e-5a6d0c7b8e21';
    const refusals = [
      `PSK_secretkey,${b}:PSK_secretkey`,
      `${a}:PSK_secretkey,${b}:PSK_secretkey`,
      `PSK_secretkey:${a}`,
    ].map((keys) => configProblems({ SIGNALWIRE_SIGNING_KEYS: keys }));
    expect(refusals).toEqual([
      [
        `SIGNALWIRE_SIGNING_KEYS: a key is listed for any project and for ${b}: list each key once, with its one project`,
      ],
      [
        `SIGNALWIRE_SIGNING_KEYS: a key is listed for ${a} and for ${b}: list each key once, with its one project`,
      ],
      [
        'SIGNALWIRE_SIGNING_KEYS: an entry is written signing_key:project_id: write the project first',
      ],
    ]);
    // The same key listed twice with the same binding is only a repetition.
    expect(loadConfig({ SIGNALWIRE_SIGNING_KEYS: `${a}:PSK_k,${a}:PSK_k` }).signingKeys).toEqual([
      'PSK_k',
      'PSK_k',
    ]);
  });

  test('When relay or reconciliation values are malformed, then each is named without echoing a token', () => {
    const found = configProblems({
      RELAY_RETRY_SCHEDULE: '10s,soon',
      RELAY_ALLOWED_NETWORKS: '10.0.0.0/33',
      SIGNALWIRE_CREDENTIALS: 'PTsecret-without-project',
      RECONCILE_RATE: '0',
    });
    expect(found.map((p) => p.split(':')[0])).toEqual([
      'RELAY_RETRY_SCHEDULE',
      'RELAY_ALLOWED_NETWORKS',
      'RECONCILE_RATE',
      'SIGNALWIRE_CREDENTIALS',
    ]);
    expect(found.join('\n')).not.toContain('PTsecret');
  });
});

describe('all problems at once', () => {
  test('When malformed values and missing production values come together, then every one is reported in one go', () => {
    const { CALLBACK_TOKEN_SECRET: _omitted, ...env } = production;
    const found = configProblems({ ...env, PORT: 'eighty', SHUTDOWN_DELAY_MS: 'soon' });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual([
      'CALLBACK_TOKEN_SECRET',
      'PORT',
      'SHUTDOWN_DELAY_MS',
    ]);
  });

  test('When a production value is malformed rather than missing, then it is named once, for what is wrong with it', () => {
    const found = configProblems({ ...production, DATABASE_URL: 'mysql://db/sw' });
    expect(found).toEqual(['DATABASE_URL: must be a postgres:// connection string']);
  });

  test('When NODE_ENV itself is malformed, then it is reported with the rest', () => {
    const found = configProblems({ NODE_ENV: 'prod', PORT: '-1' });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual(['NODE_ENV', 'PORT']);
  });
});

describe('the simulator signing key', () => {
  test('When the simulator is the upstream and no key is set, then its key is the default', () => {
    const config = loadConfig({});
    expect(config.signingKeys).toEqual([SIMULATOR_SIGNING_KEY]);
  });

  test('When a real SIGNALWIRE_SPACE_URL is set without keys, then the published simulator key is not trusted and the start log says so', () => {
    const config = loadConfig({ SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com' });
    expect(config.signingKeys).toEqual([]);
    expect(config.defaultsInForce.join('\n')).toMatch(
      /SIGNALWIRE_SIGNING_KEYS unset with a real SIGNALWIRE_SPACE_URL/,
    );
  });

  test('When keys are set with a real upstream, then only they verify', () => {
    const config = loadConfig({
      SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com',
      SIGNALWIRE_SIGNING_KEYS: 'PSK_real',
    });
    expect(config.signingKeys).toEqual(['PSK_real']);
  });
});

describe('shutdown and queue bounds', () => {
  test('When nothing is set, then the shutdown budget covers delay and drain and the queue is bounded in bytes', () => {
    const config = loadConfig({});
    expect(config.shutdownGraceMs).toBe(30_000);
    expect(config.shutdownDelayMs + config.shutdownDrainMs).toBeLessThan(config.shutdownGraceMs);
    expect(config.ingestQueueMaxBytes).toBe(16 * 1024 * 1024);
  });

  test('When the grace period leaves no time after the delay and the drain, then it is refused', () => {
    expect(
      configProblems({
        SHUTDOWN_DELAY_MS: '5000',
        SHUTDOWN_DRAIN_MS: '20000',
        SHUTDOWN_GRACE_MS: '25000',
      }),
    ).toEqual([
      'SHUTDOWN_GRACE_MS: must exceed SHUTDOWN_DELAY_MS + SHUTDOWN_DRAIN_MS (5000 + 20000 ms), leaving time to commit what was acknowledged',
    ]);
  });
});

describe('values production must not take from the source', () => {
  // Each is in this source and in a development run's start log: anyone could use it.
  test.each([
    ['API_TOKENS', `api-token-one-0123456789,${DEV_API_TOKEN}`],
    ['CALLBACK_TOKEN_SECRET', DEV_CALLBACK_TOKEN_SECRET],
    ['SIGNALWIRE_SIGNING_KEYS', `PSK_a,${SIMULATOR_SIGNING_KEY}`],
  ])(
    'When production sets %s to a published development value, then start-up refuses it by name',
    (name, value) => {
      expect(configProblems({ ...production, [name]: value })).toEqual([
        `${name}: holds the published development value; set a real one`,
      ]);
    },
  );

  test('When a development run sets them explicitly, then they are accepted', () => {
    expect(
      configProblems({
        API_TOKENS: DEV_API_TOKEN,
        CALLBACK_TOKEN_SECRET: DEV_CALLBACK_TOKEN_SECRET,
      }),
    ).toEqual([]);
  });
});

describe('base URLs the service appends paths to', () => {
  // The proxy sends `${PUBLIC_BASE_URL}/callbacks/{api}/{token}`: behind a query or a fragment
  // that path never reaches the receiver, and every callback of every send would be lost.
  test.each([
    ['PUBLIC_BASE_URL', 'https://hooks.example.com/?env=prod', 'query string or fragment'],
    ['PUBLIC_BASE_URL', 'https://hooks.example.com/#prod', 'query string or fragment'],
    ['PUBLIC_BASE_URL', 'https://hooks.example.com/?', 'query string or fragment'],
    ['PUBLIC_BASE_URL', 'https://user:pw@hooks.example.com', 'credentials'],
    ['SIGNALWIRE_SPACE_URL', 'https://example.signalwire.com/?x=1', 'query string or fragment'],
  ])('When %s is %s, then start-up refuses it', (name, value, why) => {
    expect(configProblems({ [name]: value })).toEqual([expect.stringContaining(`${name}: `)]);
    expect(configProblems({ [name]: value })[0]).toContain(why);
  });

  test('When PUBLIC_BASE_URL has a path, then it is kept (a receiver behind a path prefix)', () => {
    expect(loadConfig({ PUBLIC_BASE_URL: 'https://hooks.example.com/sw/' }).publicBaseUrl).toBe(
      'https://hooks.example.com/sw',
    );
  });
});

describe('settings in milliseconds', () => {
  // Node's timers hold at most 2^31 − 1 ms and fire after 1 ms instead: a send would time out
  // at once, SIGTERM would skip its drain.
  test.each([
    'SIGNALWIRE_TIMEOUT_MS',
    'RELAY_TIMEOUT_MS',
    'SHUTDOWN_GRACE_MS',
    'SHUTDOWN_DRAIN_MS',
    'SHUTDOWN_DELAY_MS',
    'HTTP_KEEP_ALIVE_TIMEOUT_MS',
    'INGEST_BATCH_WAIT_MS',
  ])('When %s is longer than a Node timer can wait, then start-up refuses it', (name) => {
    expect(configProblems({ [name]: '2147483648' })).toContainEqual(
      expect.stringMatching(new RegExp(`^${name}: `)),
    );
  });

  test('When a timeout is exactly the longest timer, then it is accepted', () => {
    expect(loadConfig({ SIGNALWIRE_TIMEOUT_MS: '2147483647' }).signalwireTimeoutMs).toBe(
      2_147_483_647,
    );
  });
});

describe('listener ports', () => {
  test('When PORT and INTERNAL_PORT are the same, then start-up refuses it by name', () => {
    expect(configProblems({ PORT: '9000', INTERNAL_PORT: '9000' })).toEqual([
      expect.stringMatching(/^INTERNAL_PORT: must differ from PORT \(9000\)/),
    ]);
  });

  test('When both are 0 (free ports, as tests use) and PUBLIC_BASE_URL is set, then they are accepted', () => {
    expect(
      configProblems({ PORT: '0', INTERNAL_PORT: '0', PUBLIC_BASE_URL: 'https://sw.example' }),
    ).toEqual([]);
  });

  test('When PORT is 0 without PUBLIC_BASE_URL, then start-up refuses it: callbacks would be sent to port 0', () => {
    expect(configProblems({ PORT: '0', INTERNAL_PORT: '0' })).toEqual([
      expect.stringMatching(/^PUBLIC_BASE_URL: must be set when PORT=0/),
    ]);
  });

  test.each([
    ['INTERNAL_PORT', { SIMULATOR_PORT: '8081' }],
    ['PORT', { SIMULATOR_PORT: '8080' }],
    ['PORT', { PORT: '9000', INTERNAL_PORT: '9001', SIMULATOR_PORT: '9000' }],
  ])(
    'When the built-in simulator would listen on %s, then start-up refuses SIMULATOR_PORT by name',
    (other, env) => {
      expect(configProblems(env)).toEqual([
        expect.stringMatching(new RegExp(`^SIMULATOR_PORT: must differ from ${other} \\(\\d+\\)`)),
      ]);
    },
  );

  test('When the simulator does not start (a real SIGNALWIRE_SPACE_URL) or picks a free port, then SIMULATOR_PORT is not compared', () => {
    expect(
      configProblems({ SIMULATOR_PORT: '8081', SIGNALWIRE_SPACE_URL: 'https://x.signalwire.com' }),
    ).toEqual([]);
    expect(
      configProblems({ PORT: '0', INTERNAL_PORT: '0', PUBLIC_BASE_URL: 'https://sw.example' }),
    ).toEqual([]);
  });

  test('When HOST has stray spaces around it, then they are not part of the address', () => {
    expect(loadConfig({ HOST: ' 127.0.0.1 ' }).host).toBe('127.0.0.1');
  });

  test('When SPOOL_DIR has stray spaces around it, then the spool is the directory meant (its volume), and a blank one is refused', () => {
    expect(loadConfig({ SPOOL_DIR: ' /var/lib/sw-status/spool ' }).spoolDir).toBe(
      '/var/lib/sw-status/spool',
    );
    expect(configProblems({ SPOOL_DIR: '   ' })).toEqual(['SPOOL_DIR: must not be blank']);
  });
});

describe('any value of any variable', () => {
  // A value the checks refuse must come back as a ConfigError naming it, never as a bare
  // TypeError from inside a check (a malformed base URL once did: new URL() in a refinement).
  test('When a variable holds any text, then loading either succeeds or fails with a ConfigError naming it (property)', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc.constantFrom('not a url', 'http://', 'https://exa mple.com', '2147483648', '-1', 'NaN'),
    );
    fc.assert(
      fc.property(fc.constantFrom(...ENV_VARIABLES), text, (name, value) => {
        try {
          loadConfig({ [name]: value });
        } catch (error) {
          expect(error).toBeInstanceOf(ConfigError);
          expect((error as ConfigError).problems.join('\n')).toContain(name);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  test('When a base URL is malformed and another variable too, then both are named', () => {
    const found = configProblems({ PUBLIC_BASE_URL: 'not a url', PORT: 'abc' }).join('\n');
    expect(found).toContain('PUBLIC_BASE_URL');
    expect(found).toContain('PORT');
  });
});

describe('white space and case in any variable', () => {
  // A YAML or .env slip leaves a space around a value: numbers, HOST and SPOOL_DIR always
  // dropped it; the booleans and enums refused it, with a list of the very words written.
  test.each([
    ['STORE_BODY', 'true ', (c: Config) => c.storeBody, true],
    ['ALLOW_UNSIGNED_CALLBACKS', ' true', (c: Config) => c.allowUnsignedCallbacks, true],
    ['RELAY_ALLOW_HTTP', '\tyes\n', (c: Config) => c.relayAllowHttp, true],
    ['TRUST_PROXY', 'true ', (c: Config) => c.trustProxy, true],
    ['LOG_LEVEL', 'debug ', (c: Config) => c.logLevel, 'debug'],
    ['NODE_ENV', ' test ', (c: Config) => c.nodeEnv, 'test'],
    ['PORT', ' 9000 ', (c: Config) => c.port, 9000],
  ])('When %s=%j, then white space around the value is dropped', (name, value, read, expected) => {
    expect(read(loadConfig({ [name]: value }))).toEqual(expected);
  });

  test('When NODE_ENV is production with a stray space, then it is production: every development default is refused', () => {
    expect(configProblems({ NODE_ENV: 'production ' })).toEqual(
      expect.arrayContaining(['DATABASE_URL: required when NODE_ENV=production']),
    );
    expect(loadConfig({ ...production, NODE_ENV: ' production' }).isProduction).toBe(true);
  });

  test('When a boolean is blank or no boolean, then it is refused with the words it takes (blank is no word)', () => {
    const expected = ['STORE_BODY: must be one of true, false, 1, 0, yes, no'];
    expect(configProblems({ STORE_BODY: '  ' })).toEqual(expected);
    expect(configProblems({ STORE_BODY: 'maybe' })).toEqual(expected);
  });

  test('When a base URL names its scheme in capitals, then it is that scheme, written in lower case', () => {
    const config = loadConfig({
      PUBLIC_BASE_URL: 'HTTPS://hooks.example.com/',
      SIGNALWIRE_SPACE_URL: 'Https://example.signalwire.com',
    });
    expect(config.publicBaseUrl).toBe('https://hooks.example.com');
    expect(config.signalwireSpaceUrl).toBe('https://example.signalwire.com');
    expect(configProblems({ PUBLIC_BASE_URL: 'FTP://hooks.example.com' })).toEqual([
      'PUBLIC_BASE_URL: must be an http(s) URL',
    ]);
  });

  test('When the command-line tools read LOG_LEVEL and STORE_BODY, then they read them as the service does', () => {
    expect(cliLogLevel('info', { LOG_LEVEL: ' debug ' })).toBe('debug');
    expect(cliLogLevel('warn', { LOG_LEVEL: '' })).toBe('warn');
    expect(cliStoreBody({ STORE_BODY: 'true ' })).toBe(true);
    expect(cliStoreBody({ STORE_BODY: '' })).toBe(false);
    expect(() => cliStoreBody({ STORE_BODY: 'maybe' })).toThrow(
      'STORE_BODY: must be one of true, false, 1, 0, yes, no',
    );
  });
});

test('When a real host merely contains the letters of a placeholder, then production takes it; the manifests’ placeholders are refused', () => {
  const real = {
    ...production,
    PUBLIC_BASE_URL: 'https://status.fireplace-media.com',
    SIGNALWIRE_SPACE_URL: 'https://fireplace-media.signalwire.com',
    DATABASE_URL: 'postgres://sw:pw@db.fireplace-media.internal:5432/sw_status',
  };
  expect(configProblems(real)).toEqual([]);
  expect(
    configProblems({
      ...production,
      PUBLIC_BASE_URL: 'https://replace-me.example.com',
      SIGNALWIRE_SPACE_URL: 'HTTPS://Replace-Me.signalwire.com',
    }),
  ).toEqual([
    'PUBLIC_BASE_URL: still holds the replace-me placeholder of k8s/app/configmap.yaml',
    'SIGNALWIRE_SPACE_URL: still holds the replace-me placeholder of k8s/app/configmap.yaml',
  ]);
});

test('When a secret is spelled like a placeholder outside the refused variables, then it is still erased from what is printed', () => {
  const env = { DATABASE_READ_URL: 'postgres://reader:replace_me@standby:5432/sw' };
  expect(redactSecrets('connecting with replace_me failed', env)).toBe(
    'connecting with [redacted] failed',
  );
});
