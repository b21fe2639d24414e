import { ConfigError, loadConfig, redactSecrets } from '../../src/config';
import {
  bypassesProxy,
  egressProxyFor,
  signalwireEgressProxy,
} from '../../src/signalwire/egress-proxy';
import { configProblems } from '../helpers/config-problems';

/** HTTPS_PROXY / HTTP_PROXY / NO_PROXY read as curl reads them, checked at start. */

describe('NO_PROXY', () => {
  test.each([
    ['https://example.signalwire.com', ['example.signalwire.com'], true],
    ['https://example.signalwire.com', ['signalwire.com'], true],
    ['https://example.signalwire.com', ['.signalwire.com'], true],
    ['https://example.signalwire.com', ['*.signalwire.com'], true],
    ['https://EXAMPLE.signalwire.com', ['example.signalwire.com'], true],
    ['https://example.signalwire.com', ['*'], true],
    // As curl: `*` counts only as the whole value.
    ['https://example.signalwire.com', ['internal', '*'], false],
    ['https://example.signalwire.com.', ['signalwire.com'], true],
    ['https://example.signalwire.com', ['example.signalwire.com:443'], true],
    ['https://example.signalwire.com:8443', ['example.signalwire.com:8443'], true],
    ['https://example.signalwire.com', ['example.signalwire.com:8443'], false],
    ['https://example.signalwire.com', ['wire.com'], false],
    ['https://example.signalwire.com', ['other.example', 'internal'], false],
    ['https://example.signalwire.com', ['.'], false],
    ['http://10.0.0.1:8080', ['10.0.0.1'], true],
    ['http://10.0.0.1:8080', ['0.0.1'], false],
    ['http://[::1]:8080', ['::1'], true],
    ['http://[::1]:8080', ['[::1]:8080'], true],
    ['http://[::1]:8080', ['[::1]:9090'], false],
  ])(
    'When the target is %s and NO_PROXY holds %j, then it bypasses the proxy: %s',
    (url, noProxy, bypass) => {
      expect(bypassesProxy(new URL(url), noProxy)).toBe(bypass);
    },
  );
});

describe('the proxy for a target', () => {
  const settings = {
    httpProxy: new URL('http://plain-proxy:3128'),
    httpsProxy: new URL('http://tls-proxy:3128'),
    noProxy: ['internal.example'],
  };

  test('When the target is https, then HTTPS_PROXY applies; http, then HTTP_PROXY', () => {
    expect(egressProxyFor(new URL('https://x.signalwire.com'), settings)?.host).toBe(
      'tls-proxy:3128',
    );
    expect(egressProxyFor(new URL('http://x.signalwire.com'), settings)?.host).toBe(
      'plain-proxy:3128',
    );
  });

  test('When NO_PROXY names the target, or no proxy is set for its scheme, then it is reached directly', () => {
    expect(egressProxyFor(new URL('https://api.internal.example'), settings)).toBeUndefined();
    expect(
      egressProxyFor(new URL('https://x.signalwire.com'), { ...settings, httpsProxy: undefined }),
    ).toBeUndefined();
  });

  test('When SIGNALWIRE_SPACE_URL is unset (the built-in simulator), then nothing is proxied', () => {
    expect(signalwireEgressProxy(loadConfig({ HTTPS_PROXY: 'http://proxy:3128' }))).toBeUndefined();
  });
});

describe('the proxy variables at start', () => {
  const SPACE = { SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com' };

  test('When none is set, then nothing is proxied', () => {
    expect(loadConfig(SPACE).egressProxy).toEqual({
      httpProxy: undefined,
      httpsProxy: undefined,
      noProxy: [],
    });
  });

  test('When both spellings are set, then the lower-case one wins, as with curl', () => {
    const config = loadConfig({
      ...SPACE,
      HTTPS_PROXY: 'http://upper:3128',
      https_proxy: 'http://lower:3128',
      NO_PROXY: 'upper.example',
      no_proxy: 'Lower.Example, other.example',
    });
    expect(config.egressProxy.httpsProxy?.host).toBe('lower:3128');
    expect(config.egressProxy.noProxy).toEqual(['lower.example', 'other.example']);
  });

  test('When a proxy is given without a scheme, then it is http://, as curl reads it', () => {
    expect(
      signalwireEgressProxy(loadConfig({ ...SPACE, HTTPS_PROXY: 'proxy.internal:3128' }))?.href,
    ).toBe('http://proxy.internal:3128/');
  });

  test.each([
    'socks5://user:hunter2pass@proxy:1080',
    'http://user:hunter2pass@exa mple:3128',
    'http://:3128',
  ])(
    'When a proxy URL is unusable (%s), then start-up refuses it by name without echoing it',
    (value) => {
      const problems = configProblems({ HTTPS_PROXY: value }).join('\n');
      expect(problems).toMatch(/^HTTPS_PROXY: must be a proxy URL/);
      expect(problems).not.toContain(value);
      expect(problems).not.toContain('hunter2pass');
    },
  );

  test('When a proxy password holds a % that is no percent-encoding, then start-up refuses it by name without echoing it', () => {
    // The URL parser takes it; the proxy agents decode the credentials and failed on every
    // send (and reconciliation's at start), naming nothing.
    const problems = configProblems({ HTTPS_PROXY: 'http://egress:50%off@proxy:3128' }).join('\n');
    expect(problems).toMatch(
      /^HTTPS_PROXY: its user name or password is not valid percent-encoding/,
    );
    expect(problems).not.toContain('50%off');
  });

  test('When a proxy variable holds only spaces, then it is unset, as an empty one is', () => {
    expect(loadConfig({ ...SPACE, HTTPS_PROXY: '  ', HTTP_PROXY: ' ' }).egressProxy).toEqual({
      httpsProxy: undefined,
      httpProxy: undefined,
      noProxy: [],
    });
  });

  test('When start-up fails with a proxy password in the environment, then what is printed never carries it', () => {
    const env = {
      HTTPS_PROXY: 'http://user:s3cret%21pass@proxy:3128',
      http_proxy: 'me:0ther-secret@proxy:3128',
    };
    const text = redactSecrets('s3cret%21pass s3cret!pass 0ther-secret', env);
    expect(text).toBe('[redacted] [redacted] [redacted]');
    expect(() => loadConfig({ ...env, PORT: 'x' })).toThrow(ConfigError);
  });
});
