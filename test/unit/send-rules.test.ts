import {
  MAX_CALLBACK_URL_LENGTH,
  callbackUrlProblem,
  compatError,
  nativeError,
  parseCompatCreate,
  parseNativeCreate,
} from '../../src/signalwire/send-rules';
import type { CompatFields } from '../../src/signalwire/send-rules';

const TO = '+15557654321';
const FROM = '+15551234567';
const UUID = '0a059168-ead0-41af-9d1f-343dae832527';

function compatCode(fields: CompatFields): number | 'ok' {
  const result = parseCompatCreate(fields);
  if (result.ok) return 'ok';
  expect(result.status).toBe(400);
  expect(result.error.status).toBe(400);
  expect(result.error.more_info).toMatch(/^https:\/\//);
  return result.error.code;
}

function nativeCodes(json: unknown): Array<[string, string | null]> {
  const result = parseNativeCreate(json);
  if (result.ok) return [];
  expect(result.status).toBe(422);
  return result.error.errors.map((e) => {
    expect(e.type).toBe('validation_error');
    expect(e.url).toBe(`https://developer.signalwire.com/rest/overview/error-codes/#${e.code}`);
    return [e.code, e.attribute];
  });
}

describe('parseCompatCreate', () => {
  it('When a form has To, From and Body, then it is accepted with the documented defaults', () => {
    const result = parseCompatCreate({ To: TO, From: FROM, Body: 'Hello' });
    expect(result).toEqual({
      ok: true,
      value: {
        to: TO,
        from: FROM,
        messagingServiceSid: null,
        body: 'Hello',
        mediaUrls: [],
        sendAsMms: false,
        statusCallback: null,
        applicationSid: null,
        maxPrice: null,
        validityPeriod: 14400,
      },
    });
  });

  it('When every optional field is valid, then each is parsed (JSON numbers and booleans too)', () => {
    const result = parseCompatCreate({
      To: TO,
      MessagingServiceSid: UUID,
      MediaUrl: ['https://example.com/a.png', 'http://example.com/b.png'],
      StatusCallback: 'https://hooks.example.com/cb?x=1',
      ValidityPeriod: 172800,
      MaxPrice: '0.0075',
      SendAsMms: true,
      ApplicationSid: UUID,
    });
    expect(result.ok && result.value).toMatchObject({
      from: null,
      messagingServiceSid: UUID,
      body: null,
      mediaUrls: ['https://example.com/a.png', 'http://example.com/b.png'],
      statusCallback: 'https://hooks.example.com/cb?x=1',
      validityPeriod: 172800,
      maxPrice: '0.0075',
      sendAsMms: true,
      applicationSid: UUID,
    });
  });

  it('When MediaUrl is a single string, then it becomes a one-item list', () => {
    const result = parseCompatCreate({ To: TO, From: FROM, MediaUrl: 'https://example.com/a.png' });
    expect(result.ok && result.value.mediaUrls).toEqual(['https://example.com/a.png']);
  });

  it('When To is missing or empty, then the answer is 21604', () => {
    expect(compatCode({ From: FROM, Body: 'x' })).toBe(21604);
    expect(compatCode({ To: '', From: FROM, Body: 'x' })).toBe(21604);
  });

  it.each(['15557654321', '+1234', '+123456789012345678', '+1555-765-4321', '988'])(
    'When To is %s, then the answer is 21211 (not E.164)',
    (to) => {
      expect(compatCode({ To: to, From: FROM, Body: 'x' })).toBe(21211);
    },
  );

  it('When To has 5 or 17 digits, then it is accepted', () => {
    expect(compatCode({ To: '+12345', From: FROM, Body: 'x' })).toBe('ok');
    expect(compatCode({ To: '+12345678901234567', From: FROM, Body: 'x' })).toBe('ok');
  });

  it('When neither From nor MessagingServiceSid is sent, then the answer is 21603', () => {
    expect(compatCode({ To: TO, Body: 'x' })).toBe(21603);
  });

  it('When From is a 5 or 6 digit short code, then it is accepted; other shapes get 21212', () => {
    expect(compatCode({ To: TO, From: '12345', Body: 'x' })).toBe('ok');
    expect(compatCode({ To: TO, From: '123456', Body: 'x' })).toBe('ok');
    expect(compatCode({ To: TO, From: '1234', Body: 'x' })).toBe(21212);
    expect(compatCode({ To: TO, From: 'ACME', Body: 'x' })).toBe(21212);
  });

  it('When MessagingServiceSid is not a UUID, then the answer is 21705', () => {
    expect(compatCode({ To: TO, MessagingServiceSid: 'MG123', Body: 'x' })).toBe(21705);
  });

  it('When neither Body nor MediaUrl is sent, then the answer is 21619; an empty Body gets 21602', () => {
    expect(compatCode({ To: TO, From: FROM })).toBe(21619);
    expect(compatCode({ To: TO, From: FROM, Body: '' })).toBe(21602);
    expect(compatCode({ To: TO, From: FROM, Body: '', MediaUrl: 'https://e.com/a.png' })).toBe(
      'ok',
    );
  });

  it('When Body has 1600 characters it is accepted, and 1601 gets 21617', () => {
    expect(compatCode({ To: TO, From: FROM, Body: 'a'.repeat(1600) })).toBe('ok');
    expect(compatCode({ To: TO, From: FROM, Body: '😀'.repeat(1600) })).toBe('ok');
    expect(compatCode({ To: TO, From: FROM, Body: 'a'.repeat(1601) })).toBe(21617);
  });

  it('When Body is counted only between 1600 and 3200 UTF-16 units, then the count is still in code points at each edge', () => {
    // Each code point is one or two units: the length bounds the count on both sides.
    const cases: Array<[string, number | 'ok']> = [
      ['😀'.repeat(1600), 'ok'], // 3,200 units, 1,600 characters
      ['😀'.repeat(1599) + 'aa', 21617], // 3,200 units, 1,601 characters
      ['a' + '😀'.repeat(1599), 'ok'], // 3,199 units, 1,600 characters
      ['a' + '😀'.repeat(1600), 21617], // 3,201 units: over without counting
      ['😀'.repeat(1601), 21617], // 3,202 units
      ['\uD83D'.repeat(1600), 'ok'], // lone surrogates are one character each
      ['\uD83D'.repeat(1601), 21617],
    ];
    for (const [body, code] of cases) {
      expect(compatCode({ To: TO, From: FROM, Body: body })).toBe(code);
      expect(nativeCodes({ to: TO, from: FROM, body })).toEqual(
        code === 'ok' ? [] : [['invalid_parameter', 'body']],
      );
    }
  });

  it('When 8 media are sent it is accepted, and 9 get 21623', () => {
    const media = Array.from({ length: 9 }, (_, i) => `https://e.com/${i}.png`);
    expect(compatCode({ To: TO, From: FROM, MediaUrl: media.slice(0, 8) })).toBe('ok');
    expect(compatCode({ To: TO, From: FROM, MediaUrl: media })).toBe(21623);
  });

  it.each(['ftp://e.com/a.png', 'not a url', 'file:///etc/passwd'])(
    'When a MediaUrl is %s, then the answer is 21620',
    (url) => {
      expect(compatCode({ To: TO, From: FROM, MediaUrl: ['https://e.com/a.png', url] })).toBe(
        21620,
      );
    },
  );

  it('When StatusCallback is not an http(s) URL, then the answer is 21609', () => {
    expect(compatCode({ To: TO, From: FROM, Body: 'x', StatusCallback: 'localhost/cb' })).toBe(
      21609,
    );
    expect(compatCode({ To: TO, From: FROM, Body: 'x', StatusCallback: 'ftp://e.com/cb' })).toBe(
      21609,
    );
  });

  it.each(['0', '172801', '1.5', '-1', 'abc'])(
    'When ValidityPeriod is %s, then the answer is 21624',
    (value) => {
      expect(compatCode({ To: TO, From: FROM, Body: 'x', ValidityPeriod: value })).toBe(21624);
    },
  );

  it('When ValidityPeriod is at its bounds, then it is accepted', () => {
    expect(compatCode({ To: TO, From: FROM, Body: 'x', ValidityPeriod: '1' })).toBe('ok');
    expect(compatCode({ To: TO, From: FROM, Body: 'x', ValidityPeriod: '172800' })).toBe('ok');
  });

  it.each([
    ['1', 'ok'],
    ['1.', 'ok'],
    ['0.0075', 'ok'],
    ['0.00751', 21627],
    ['.5', 21627],
    ['-1', 21627],
    ['1e3', 21627],
  ] as const)('When MaxPrice is %s, then the answer is %s', (value, expected) => {
    expect(compatCode({ To: TO, From: FROM, Body: 'x', MaxPrice: value })).toBe(expected);
  });

  it('When SendAsMms is boolean-ish it is parsed, and anything else gets 10000', () => {
    const parsed = parseCompatCreate({ To: TO, From: FROM, Body: 'x', SendAsMms: 'TRUE' });
    expect(parsed.ok && parsed.value.sendAsMms).toBe(true);
    expect(compatCode({ To: TO, From: FROM, Body: 'x', SendAsMms: 'false' })).toBe('ok');
    expect(compatCode({ To: TO, From: FROM, Body: 'x', SendAsMms: 'maybe' })).toBe(10000);
  });

  it('When ApplicationSid is not a UUID, then the answer is 21218', () => {
    expect(compatCode({ To: TO, From: FROM, Body: 'x', ApplicationSid: 'AP123' })).toBe(21218);
  });

  it('When several fields are wrong, then only the first problem is reported', () => {
    const result = parseCompatCreate({ To: 'bad', Body: 'a'.repeat(2000) });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.code).toBe(21211);
  });

  it('When a form repeats a single-valued key, then the first value is used', () => {
    const result = parseCompatCreate({ To: [TO, 'bad'], From: FROM, Body: 'x' });
    expect(result.ok && result.value.to).toBe(TO);
  });
});

describe('parseNativeCreate', () => {
  it('When to, from and body are valid, then it is accepted as SMS defaults', () => {
    expect(parseNativeCreate({ to: TO, from: FROM, body: 'Hello' })).toEqual({
      ok: true,
      value: {
        to: TO,
        from: FROM,
        body: 'Hello',
        media: [],
        sendAsMms: false,
        statusCallback: null,
        customVariables: {},
      },
    });
  });

  it('When to is a passthrough number like 988 or +988, then it is accepted', () => {
    expect(nativeCodes({ to: '988', from: FROM, body: 'x' })).toEqual([]);
    expect(nativeCodes({ to: '+988', from: FROM, body: 'x' })).toEqual([]);
  });

  it('When neither body nor media is given, then the answer is body_or_media_required on body (seed 003)', () => {
    const result = parseNativeCreate({ to: TO, from: FROM });
    expect(result).toEqual({
      ok: false,
      status: 422,
      error: {
        errors: [
          {
            type: 'validation_error',
            code: 'body_or_media_required',
            message: 'Body must be included if there is no Media.',
            attribute: 'body',
            url: 'https://developer.signalwire.com/rest/overview/error-codes/#body_or_media_required',
          },
        ],
      },
    });
    expect(nativeCodes({ to: TO, from: FROM, body: '', media: [] })).toEqual([
      ['body_or_media_required', 'body'],
    ]);
  });

  it('When several fields are wrong, then every problem is reported', () => {
    expect(
      nativeCodes({
        from: '12',
        body: 'a'.repeat(1601),
        media: Array.from({ length: 9 }, () => 'ftp://e.com/a.png'),
        send_as_mms: 'yes',
        status_callback: 'nope',
      }),
    ).toEqual([
      ['missing_required_parameter', 'to'],
      ['invalid_parameter', 'from'],
      ['invalid_parameter', 'body'],
      ['invalid_parameter', 'media'],
      ['invalid_parameter', 'media'],
      ['invalid_parameter', 'send_as_mms'],
      ['invalid_parameter', 'status_callback'],
    ]);
  });

  it('When media and send_as_mms are valid, then they are returned', () => {
    const result = parseNativeCreate({
      to: TO,
      from: '12345',
      media: ['https://e.com/a.png'],
      send_as_mms: true,
      status_callback: 'http://127.0.0.1:9/cb',
    });
    expect(result.ok && result.value).toMatchObject({
      body: null,
      media: ['https://e.com/a.png'],
      sendAsMms: true,
      statusCallback: 'http://127.0.0.1:9/cb',
    });
  });

  it('When JSON null is sent for optional fields, then they count as absent', () => {
    expect(
      nativeCodes({
        to: TO,
        from: FROM,
        body: 'x',
        media: null,
        status_callback: null,
        custom_variables: null,
      }),
    ).toEqual([]);
  });

  it('When custom_variables respect the rules, then they are returned', () => {
    const vars = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key_${i}`, 'v']));
    vars['_under'] = 'x'.repeat(1024);
    delete vars['key_0'];
    const result = parseNativeCreate({ to: TO, from: FROM, body: 'x', custom_variables: vars });
    expect(result.ok && result.value.customVariables).toEqual(vars);
  });

  it('When custom_variables break a rule, then each broken pair is reported', () => {
    const result = parseNativeCreate({
      to: TO,
      from: FROM,
      body: 'x',
      custom_variables: {
        '1bad': 'v',
        'has-dash': 'v',
        signalwire_id: 'v',
        sw_x: 'v',
        rtc_x: 'v',
        internal_x: 'v',
        empty: '',
        number: 5,
        big: 'é'.repeat(513), // 1026 bytes
        fine: 'ok',
      },
    });
    expect(result.ok).toBe(false);
    const messages = !result.ok ? result.error.errors.map((e) => e.message) : [];
    expect(messages).toHaveLength(9);
    expect(!result.ok && result.error.errors.every((e) => e.attribute === 'custom_variables')).toBe(
      true,
    );
  });

  it('When there are more than 20 custom variables, then the count is reported', () => {
    const vars = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
    expect(nativeCodes({ to: TO, from: FROM, body: 'x', custom_variables: vars })).toEqual([
      ['invalid_parameter', 'custom_variables'],
    ]);
  });

  it('When the body is not a JSON object, then a single invalid_parameter error is returned', () => {
    expect(nativeCodes([1, 2])).toEqual([['invalid_parameter', null]]);
    expect(nativeCodes(undefined)).toEqual([['invalid_parameter', null]]);
  });
});

describe('error body helpers', () => {
  it('When a compatibility error is built, then it has the seed shape with the status repeated', () => {
    expect(compatError(502, 20500, 'Upstream unreachable')).toEqual({
      status: 502,
      error: {
        code: 20500,
        message: 'Upstream unreachable',
        more_info:
          'https://developer.signalwire.com/rest/compatibility-api/overview/error-codes#20500',
        status: 502,
      },
    });
  });

  it('When a native error is built, then it has the errors envelope', () => {
    expect(nativeError(504, 'upstream_error', 'gateway_timeout', 'Upstream timed out')).toEqual({
      status: 504,
      error: {
        errors: [
          {
            type: 'upstream_error',
            code: 'gateway_timeout',
            message: 'Upstream timed out',
            attribute: null,
            url: 'https://developer.signalwire.com/rest/overview/error-codes/#gateway_timeout',
          },
        ],
      },
    });
  });
});

describe('callbackUrlProblem', () => {
  it.each([
    'https://app.example.com/hooks/sms?tenant=acme',
    'http://127.0.0.1:9/cb',
    'https://[2001:db8::1]:8443/cb',
    // SignalWire's documented delivery-timeout overrides (RESEARCH §3.3).
    'https://e.com/cb#rt=10000&ot=3000&tt=15000',
    `https://e.com/${'a'.repeat(MAX_CALLBACK_URL_LENGTH - 'https://e.com/'.length)}`,
  ])('When the callback URL is %s, then it is accepted', (url) => {
    expect(callbackUrlProblem(url)).toBeNull();
  });

  it.each([
    ['relative', '/hooks/sms', 'is not an absolute URL'],
    ['without scheme', 'app.example.com/cb', 'is not an absolute URL'],
    ['another scheme', 'ftp://e.com/cb', 'is not an http(s) URL'],
    ['javascript', 'javascript:alert(1)', 'is not an http(s) URL'],
    ['with credentials', 'https://user:pw@e.com/cb', 'must not contain credentials'],
    ['with a user only', 'https://user@e.com/cb', 'must not contain credentials'],
    ['with a space', 'https://e.com/c b', 'contains spaces or control characters'],
    ['with a newline', 'https://e.com/\ncb', 'contains spaces or control characters'],
    ['with a tab in the host', 'https://e.\tcom/cb', 'contains spaces or control characters'],
    [
      'too long',
      `https://e.com/${'a'.repeat(MAX_CALLBACK_URL_LENGTH)}`,
      'is longer than 2048 characters',
    ],
  ])('When the callback URL is %s, then it is refused: %s', (_name, url, problem) => {
    expect(callbackUrlProblem(url)).toBe(problem);
  });

  it('When the compatibility StatusCallback has credentials, then the answer is 21609 and does not echo them', () => {
    const result = parseCompatCreate({
      To: TO,
      From: FROM,
      Body: 'x',
      StatusCallback: 'https://user:secret@e.com/cb',
    });
    expect(result).toMatchObject({ ok: false, status: 400, error: { code: 21609 } });
    expect(JSON.stringify(result)).not.toContain('secret');
  });

  it('When the native status_callback is malformed, then it is a 422 on status_callback', () => {
    expect(
      nativeCodes({ to: TO, from: FROM, body: 'x', status_callback: 'https://e.com/c b' }),
    ).toEqual([['invalid_parameter', 'status_callback']]);
  });
});
