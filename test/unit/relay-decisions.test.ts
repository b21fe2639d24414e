import { RestClient } from '@signalwire/compatibility-api';
import fc from 'fast-check';
import { httpDate, retryAfter } from '../../src/http/retry-after';
import { addressGuard, urlProblem } from '../../src/relay/address-policy';
import type { DestinationPolicy } from '../../src/relay/address-policy';
import { createHostLimiter } from '../../src/relay/circuit-breaker';
import { relayRequest, withoutMessageBody } from '../../src/relay/relay-request';
import { decide, isHostFailure, MAX_RETRY_AFTER_MS } from '../../src/relay/retry-policy';
import { relaySigningKey, signJsonBody, signingKeyRef } from '../../src/signalwire/signing';

const SCHEDULE = [10_000, 60_000, 300_000];

describe('retry policy', () => {
  test('When the app answers 2xx, then the relay is delivered', () => {
    expect(decide({ kind: 'answered', status: 204 }, 0, SCHEDULE)).toEqual({
      state: 'delivered',
      status: 204,
    });
  });

  test('When an attempt fails, then the next wait comes from the schedule, and past its end the job is dead', () => {
    const failed = { kind: 'failed', error: 'ECONNREFUSED' } as const;
    expect(decide(failed, 0, SCHEDULE)).toMatchObject({ state: 'pending', delayMs: 10_000 });
    expect(decide(failed, 2, SCHEDULE)).toMatchObject({ state: 'pending', delayMs: 300_000 });
    expect(decide(failed, 3, SCHEDULE)).toMatchObject({
      state: 'dead',
      error: 'ECONNREFUSED (after 4 attempts)',
    });
  });

  test('When the app redirects, then it is a failure and the redirect is not followed', () => {
    expect(decide({ kind: 'answered', status: 302 }, 0, SCHEDULE)).toMatchObject({
      state: 'pending',
      status: 302,
      error: 'HTTP 302: redirects are not followed',
    });
  });

  test.each([429, 503])(
    'When the app answers %s with Retry-After, then the wait is the longer of it and the schedule’s step, capped at a day, and no attempt is added',
    (status) => {
      const asked = (retryAfterMs: number) => ({ kind: 'answered', status, retryAfterMs }) as const;
      expect(decide(asked(3_600_000), 0, SCHEDULE)).toMatchObject({
        state: 'pending',
        delayMs: 3_600_000,
        status,
        error: `HTTP ${status}`,
      });
      expect(decide(asked(1_000), 1, SCHEDULE)).toMatchObject({ delayMs: 60_000 });
      expect(decide(asked(365 * 86_400_000), 0, SCHEDULE)).toMatchObject({
        delayMs: MAX_RETRY_AFTER_MS,
      });
      expect(MAX_RETRY_AFTER_MS).toBe(86_400_000);
      // The schedule's end is still the end: asking to wait buys no extra attempt.
      expect(decide(asked(3_600_000), 3, SCHEDULE)).toMatchObject({ state: 'dead' });
    },
  );

  test('When another status than 429 or 503 comes with Retry-After, then the schedule alone decides', () => {
    for (const status of [500, 302, 404]) {
      expect(
        decide({ kind: 'answered', status, retryAfterMs: 3_600_000 }, 0, SCHEDULE),
      ).toMatchObject({
        state: 'pending',
        delayMs: 10_000,
      });
    }
  });

  test('When a Retry-After is read, then delta-seconds and the three HTTP-date forms count, and garbage does not', () => {
    const now = Date.parse('1994-11-06T08:00:00Z');
    expect(retryAfter('120', now)).toBe(120_000);
    expect(retryAfter(' 0 ', now)).toBe(0);
    expect(retryAfter('Sun, 06 Nov 1994 08:49:37 GMT', now)).toBe(2_977_000);
    expect(retryAfter('Sunday, 06-Nov-94 08:49:37 GMT', now)).toBe(2_977_000);
    expect(retryAfter('Sun Nov  6 08:49:37 1994', now)).toBe(2_977_000);
    // A date already past: no wait.
    expect(retryAfter('Sat, 05 Nov 1994 08:49:37 GMT', now)).toBe(0);
    for (const garbage of ['soon', '-5', '1.5', '1 2', '0x10', '1994-11-06', '', 'Infinity']) {
      expect(retryAfter(garbage, now)).toBeUndefined();
    }
    expect(retryAfter(undefined, now)).toBeUndefined();
    expect(httpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(Date.parse('1994-11-06T08:49:37Z'));
    expect(httpDate('yesterday')).toBeUndefined();
  });

  test('When the destination is refused, then the job is dead at once with the reason', () => {
    expect(decide({ kind: 'refused', reason: 'address 10.0.0.1 …' }, 0, SCHEDULE)).toEqual({
      state: 'dead',
      status: null,
      error: 'address 10.0.0.1 …',
    });
  });

  test('When the app answers 4xx, then its host is not counted as failing; 5xx, 429 and errors are', () => {
    expect(isHostFailure({ kind: 'answered', status: 404 })).toBe(false);
    expect(isHostFailure({ kind: 'answered', status: 503 })).toBe(true);
    expect(isHostFailure({ kind: 'answered', status: 429 })).toBe(true);
    expect(isHostFailure({ kind: 'failed', error: 'timeout' })).toBe(true);
    expect(isHostFailure({ kind: 'refused', reason: 'x' })).toBe(false);
  });
});

describe('per-host limit and circuit breaker', () => {
  const options = { hostConcurrency: 2, failureThreshold: 3, openMs: 1_000, maxOpenMs: 4_000 };

  test('When a host has its requests in flight, then it takes no more while others still do', () => {
    const limiter = createHostLimiter(options);
    limiter.started('https://a');
    limiter.started('https://a');
    expect(limiter.available('https://a', 0)).toBe(0);
    expect(limiter.available('https://b', 0)).toBe(2);
    expect(limiter.blocked(0)).toEqual(['https://a']);
  });

  test('When a host fails repeatedly, then it opens, half-opens for one trial, and closes on success', () => {
    const limiter = createHostLimiter(options);
    const fail = (now: number) => {
      limiter.started('h');
      return limiter.finished('h', true, now);
    };
    expect(fail(0)).toBeNull();
    expect(fail(0)).toBeNull();
    expect(fail(0)).toBe('open');
    expect(limiter.available('h', 500)).toBe(0);
    expect(limiter.openHosts(500)).toBe(1);
    expect(limiter.state('h', 1_000)).toBe('half-open');
    expect(limiter.available('h', 1_000)).toBe(1);
    // The trial fails: open again, for twice as long.
    expect(fail(1_000)).toBe('open');
    expect(limiter.state('h', 2_999)).toBe('open');
    expect(limiter.state('h', 3_000)).toBe('half-open');
    limiter.started('h');
    expect(limiter.finished('h', false, 3_000)).toBe('closed');
    expect(limiter.available('h', 3_000)).toBe(2);
  });
});

describe('address policy', () => {
  const strict: DestinationPolicy = { allowedNetworks: [], allowHttp: true };
  const guard = addressGuard([]);
  const problem = (url: string, policy = strict, g = guard) => urlProblem(url, policy, g);

  test.each([
    'http://169.254.169.254/latest/meta-data/',
    'http://127.0.0.1:8080/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::1]/',
    'http://0.0.0.0/',
    'http://2130706433/',
    'http://0x7f.1/',
    'http://10.1.2.3/',
    'http://100.64.0.1/',
    'http://192.168.1.1/',
    'http://[fd00::1]/',
    'http://[64:ff9b::7f00:1]/',
    'http://168.63.129.16/',
    'http://100.100.100.200/',
    'http://[fd00:ec2::254]/',
  ])('When the destination is %s, then it is refused before any connection', (url) => {
    expect(problem(url)).toMatch(/not allowed/);
  });

  test('When the destination is public, then it is allowed', () => {
    expect(problem('https://93.184.216.34/hook')).toBeNull();
    expect(problem('https://app.example.com/hook')).toBeNull();
  });

  test('When loopback is an allowed network, then 127.0.0.1 passes but the IPv4-mapped form does not', () => {
    const loopback = addressGuard(['127.0.0.0/8']);
    const policy = { allowedNetworks: ['127.0.0.0/8'], allowHttp: true };
    expect(problem('http://127.0.0.1:9/', policy, loopback)).toBeNull();
    expect(problem('http://[::ffff:127.0.0.1]:9/', policy, loopback)).toMatch(/ipv4Mapped/);
  });

  test('When the scheme is not http(s), credentials are in the URL, or http is not allowed, then it is refused', () => {
    expect(problem('ftp://app.example.com/')).toMatch(/scheme/);
    expect(problem('https://user:pw@app.example.com/')).toMatch(/credentials/);
    expect(problem('http://app.example.com/', { allowedNetworks: [], allowHttp: false })).toMatch(
      /plain http/,
    );
    expect(problem('not a url')).toMatch(/not a valid URL/);
  });

  test('When any address in a private IPv4 range is the destination, then it is refused (property)', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const privateAddress = fc.oneof(
      fc.tuple(octet, octet, octet).map(([b, c, d]) => `10.${b}.${c}.${d}`),
      fc
        .tuple(fc.integer({ min: 16, max: 31 }), octet, octet)
        .map(([b, c, d]) => `172.${b}.${c}.${d}`),
      fc.tuple(octet, octet).map(([c, d]) => `192.168.${c}.${d}`),
      fc.tuple(octet, octet, octet).map(([b, c, d]) => `127.${b}.${c}.${d}`),
      fc.tuple(octet, octet).map(([c, d]) => `169.254.${c}.${d}`),
      fc
        .tuple(fc.integer({ min: 64, max: 127 }), octet, octet)
        .map(([b, c, d]) => `100.${b}.${c}.${d}`),
    );
    fc.assert(
      fc.property(privateAddress, (address) => {
        expect(guard.problem(address)).not.toBeNull();
        // The same address as an integer host, or IPv4-mapped, is refused too.
        const n = address.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
        expect(problem(`http://${n}/`)).not.toBeNull();
        expect(problem(`http://[::ffff:${address}]/`)).not.toBeNull();
      }),
    );
  });
});

describe('relay request', () => {
  const keys = ['PSK_first', 'PSK_second'];
  const url = 'https://app.example.com/sms/status?tenant=7';

  test('When a form callback is relayed, then the official SDK validates it with the key that verified the original', () => {
    const params = {
      MessageSid: 'abc',
      MessageStatus: 'delivered',
      Body: 'Héllo & more',
      To: '+1',
    };
    const body = Buffer.from(new URLSearchParams(params).toString());
    const request = relayRequest(
      {
        url,
        method: 'POST',
        contentType: 'application/x-www-form-urlencoded',
        payload: body,
        signingKeyRef: signingKeyRef('PSK_second'),
        projectId: null,
      },
      keys,
    );
    expect(request.body).toEqual(body);
    const signature = request.headers['x-signalwire-signature']!;
    expect(RestClient.validateRequest('PSK_second', signature, url, params)).toBe(true);
    expect(RestClient.validateRequest('PSK_first', signature, url, params)).toBe(false);
  });

  test('When any form parameters are relayed, then the official SDK validates the signature (property)', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 30 });
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 20 }).filter((k) => k !== '__proto__'),
          text,
          {
            maxKeys: 12,
          },
        ),
        (params) => {
          const body = Buffer.from(new URLSearchParams(params).toString());
          const { headers } = relayRequest(
            {
              url,
              method: 'POST',
              contentType: 'application/x-www-form-urlencoded',
              payload: body,
              signingKeyRef: null,
              projectId: null,
            },
            keys,
          );
          expect(
            RestClient.validateRequest(
              'PSK_first',
              headers['x-signalwire-signature']!,
              url,
              params,
            ),
          ).toBe(true);
        },
      ),
    );
  });

  test('When the verifying key was rotated away or a token authenticated it, and no key is bound to a project, then the first key signs', () => {
    const request = relayRequest(
      {
        url,
        method: 'POST',
        contentType: 'application/json',
        payload: Buffer.from('{"id":"x","status":"sent"}'),
        signingKeyRef: signingKeyRef('PSK_gone'),
        projectId: null,
      },
      keys,
    );
    expect(request.headers['x-signalwire-signature']).toBe(
      signJsonBody('PSK_first', url, '{"id":"x","status":"sent"}'),
    );
  });

  describe('the key a relay is signed with', () => {
    const PROJECT_A = 'aaaaaaaa-0000-4000-8000-000000000001';
    const PROJECT_B = 'bbbbbbbb-0000-4000-8000-000000000002';
    test.each([
      ['a verified key, kept', [PROJECT_A, null], 'PSK_second', PROJECT_A, 'PSK_second'],
      [
        'the key bound to the message’s project',
        [PROJECT_A, PROJECT_B],
        null,
        PROJECT_B,
        'PSK_second',
      ],
      [
        'a project id in upper case',
        [PROJECT_A, PROJECT_B],
        null,
        PROJECT_B.toUpperCase(),
        'PSK_second',
      ],
      ['an unbound key, the project having none', [PROJECT_A, null], null, PROJECT_B, 'PSK_second'],
      [
        'an unbound key, the message having no project',
        [PROJECT_A, null],
        null,
        null,
        'PSK_second',
      ],
      [
        'the project’s key for a key rotated away',
        [PROJECT_A, PROJECT_B],
        'PSK_gone',
        PROJECT_B,
        'PSK_second',
      ],
      ['none: only another project’s key', [PROJECT_A, PROJECT_A], null, PROJECT_B, undefined],
      ['none: only bound keys, no project', [PROJECT_A, PROJECT_B], null, null, undefined],
    ] as const)('%s', (_, projects, verified, project, expected) => {
      const ref = verified === null ? null : signingKeyRef(verified);
      expect(relaySigningKey(keys, projects, ref, project)).toBe(expected);
    });
  });

  test.each([
    ['POST', 'application/x-www-form-urlencoded', 'MessageSid=a&MessageStatus=sent'],
    ['POST', 'application/json', '{"id":"x","status":"sent"}'],
    ['GET', null, 'MessageSid=a&MessageStatus=sent'],
  ] as const)(
    'When no signing key is configured, then a %s %s relay carries no signature header',
    (method, contentType, payload) => {
      const request = relayRequest(
        {
          url,
          method,
          contentType,
          payload: Buffer.from(payload),
          signingKeyRef: null,
          projectId: null,
        },
        [],
      );
      expect(request.headers).not.toHaveProperty('x-signalwire-signature');
      expect(request.headers).not.toHaveProperty('x-twilio-signature');
    },
  );

  test('When the original was a GET, then its query joins the URL and the signature covers it', () => {
    const request = relayRequest(
      {
        url,
        method: 'GET',
        contentType: null,
        payload: Buffer.from('MessageSid=a&MessageStatus=sent'),
        signingKeyRef: null,
        projectId: null,
      },
      keys,
    );
    expect(request.url).toBe(`${url}&MessageSid=a&MessageStatus=sent`);
    expect(request.body).toBeNull();
    expect(
      RestClient.validateRequest(
        'PSK_first',
        request.headers['x-signalwire-signature']!,
        request.url,
        {},
      ),
    ).toBe(true);
  });

  test('When a relay is dead, then the message body is removed from what is kept', () => {
    const form = withoutMessageBody(
      Buffer.from('MessageSid=a&Body=secret&To=%2B1'),
      'POST',
      'application/x-www-form-urlencoded; charset=utf-8',
    );
    expect(form.toString()).toBe('MessageSid=a&To=%2B1');
    const json = withoutMessageBody(
      Buffer.from('{"id":"a","body":"secret"}'),
      'POST',
      'application/json',
    );
    expect(JSON.parse(json.toString())).toEqual({ id: 'a' });
  });
});
