import { ConfigError, DEV_API_TOKEN, SIMULATOR_SIGNING_KEY, loadConfig } from '../../src/config';

const production = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://db/sw',
  SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com',
  SIGNALWIRE_SIGNING_KEYS: 'PSK_a,PSK_b',
  CALLBACK_TOKEN_SECRET: 'a-production-secret-of-length',
  API_TOKENS: 'tok1, tok2',
  PUBLIC_BASE_URL: 'https://hooks.example.com/',
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('loadConfig', () => {
  test('When nothing is set, then local defaults are in force and listed', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      internalPort: 8081,
      host: '0.0.0.0',
      databaseUrl: undefined,
    });
    expect(config.apiTokens).toEqual([DEV_API_TOKEN]);
    expect(config.signingKeys).toEqual([SIMULATOR_SIGNING_KEY]);
    expect(config.publicBaseUrl).toBe('http://127.0.0.1:8080');
    expect(config.defaultsInForce.length).toBeGreaterThanOrEqual(5);
  });

  test('When production is fully configured, then lists are split and the base URL is trimmed', () => {
    const config = loadConfig(production);
    expect(config.signingKeys).toEqual(['PSK_a', 'PSK_b']);
    expect(config.apiTokens).toEqual(['tok1', 'tok2']);
    expect(config.publicBaseUrl).toBe('https://hooks.example.com');
    expect(config.defaultsInForce).toEqual([]);
  });

  test('When CORS_ORIGINS lists origins, then they are kept; a URL with a path is refused', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(
      loadConfig({ CORS_ORIGINS: 'https://dash.example.com, http://localhost:3000' }).corsOrigins,
    ).toEqual(['https://dash.example.com', 'http://localhost:3000']);
    expect(problems({ CORS_ORIGINS: 'https://dash.example.com/app' })).toEqual([
      'CORS_ORIGINS: each origin is scheme://host[:port] (no path), or *',
    ]);
  });

  test('When production lacks a secret, then the problem names that variable', () => {
    const { CALLBACK_TOKEN_SECRET: _omitted, ...env } = production;
    expect(problems(env)).toEqual(['CALLBACK_TOKEN_SECRET: required when NODE_ENV=production']);
  });

  test('When production allows unsigned callbacks, then it is refused', () => {
    expect(problems({ ...production, ALLOW_UNSIGNED_CALLBACKS: 'true' })).toEqual([
      'ALLOW_UNSIGNED_CALLBACKS: must not be true when NODE_ENV=production',
    ]);
  });

  test('When several variables are bad, then there is one line per variable', () => {
    const found = problems({
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

  test('When a variable is set to an empty string, then it counts as unset', () => {
    expect(loadConfig({ PORT: '', API_TOKENS: '' })).toMatchObject({
      port: 8080,
      apiTokens: [DEV_API_TOKEN],
    });
  });
});

test('When a production secret still holds the example placeholder, then start-up is refused', () => {
  expect(problems({ ...production, API_TOKENS: 'REPLACE_ME' })).toEqual([
    'API_TOKENS: still holds the REPLACE_ME placeholder',
  ]);
});
