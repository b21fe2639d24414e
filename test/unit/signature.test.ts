import { RestClient } from '@signalwire/compatibility-api';
import { candidateUrlsFor, verifySignature } from '../../src/callbacks/signature';
import { sha256Hex, signFormParams, signJsonBody, signSha256 } from '../../src/signalwire/signing';

const noBody = Buffer.alloc(0);

describe('SignalWire signing schemes (SIGNALWIRE.md test vectors)', () => {
  const vectorParams: Array<[string, string]> = [
    ['CallSid', 'CA1234567890ABCDE'],
    ['Caller', '+14158675309'],
    ['Digits', '1234'],
    ['From', '+14158675309'],
    ['To', '+18005551212'],
  ];
  const vectorUrl = 'https://mycompany.com/myapp.php?foo=1&bar=2';

  test('When the scheme B vector is signed, then it matches the documented signature', () => {
    expect(signFormParams('12345', vectorUrl, vectorParams)).toBe('RSOYDt4T1cUTdK1PDd93/VVr8B8=');
  });

  test('When the scheme B vector params arrive in another order, then the signature is the same', () => {
    expect(signFormParams('12345', vectorUrl, [...vectorParams].reverse())).toBe(
      'RSOYDt4T1cUTdK1PDd93/VVr8B8=',
    );
  });

  test('When the scheme A vector is signed, then it matches the documented signature', () => {
    expect(
      signJsonBody(
        'PSK_7TruNcSNTxp4zNrykMj4EPzF',
        'https://hooks.example.com/callbacks/native',
        '{"id":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","status":"delivered"}',
      ),
    ).toBe('4f2925f09cc2b49edd0f81c20f5fe1572db752ab');
  });

  test('When the official SDK validates the vector and our signatures, then it accepts them', () => {
    const params = Object.fromEntries(vectorParams);
    expect(
      RestClient.validateRequest('12345', 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', vectorUrl, params),
    ).toBe(true);

    const callback = {
      MessageSid: '0a059168-ead0-41af-9d1f-343dae832527',
      MessageStatus: 'undelivered',
      ErrorCode: '30003',
      AccountSid: 'ea108133-d6b3-407c-9536-9fad8a929a6a',
      From: '+15551234567',
      To: '+15557654321',
      Body: 'Hello & good bye = ok?',
    };
    const url = 'https://hooks.example.com/callbacks/cxml/ref.mac?x=1';
    const ours = signFormParams('PSK_rotation_key', url, Object.entries(callback));
    expect(RestClient.validateRequest('PSK_rotation_key', ours, url, callback)).toBe(true);
    expect(RestClient.validateRequest('PSK_other', ours, url, callback)).toBe(false);
    // The SDK also accepts the same request signed for the URL with its default port.
    const withPort = signFormParams(
      'PSK_rotation_key',
      'https://hooks.example.com:443/callbacks/cxml/ref.mac?x=1',
      Object.entries(callback),
    );
    expect(RestClient.validateRequest('PSK_rotation_key', withPort, url, callback)).toBe(true);
  });

  test('When a repeated form key is signed, then the SDK agrees on the order', () => {
    const pairs: Array<[string, string]> = [
      ['MediaUrl', 'https://a/1'],
      ['Body', 'x'],
      ['MediaUrl', 'https://a/2'],
    ];
    const url = 'https://hooks.example.com/callbacks/cxml';
    const signature = signFormParams('k', url, pairs);
    expect(
      RestClient.validateRequest('k', signature, url, {
        Body: 'x',
        MediaUrl: ['https://a/1', 'https://a/2'],
      }),
    ).toBe(true);
  });
});

describe('verifySignature', () => {
  const base = 'https://hooks.example.com';
  const formPairs: Array<[string, string]> = [
    ['MessageSid', 'abc'],
    ['MessageStatus', 'sent'],
  ];
  const formBody = Buffer.from(new URLSearchParams(formPairs).toString());
  const jsonBody = Buffer.from('{"id":"abc","status":"sent"}');

  const verify = (
    keys: string[],
    headers: Record<string, string>,
    opts: {
      path?: string;
      body?: Buffer;
      form?: Array<[string, string]>;
      kind?: 'form' | 'json';
    } = {},
  ) =>
    verifySignature(keys, base, {
      headers,
      originalUrl: opts.path ?? '/callbacks/cxml',
      // A form (or a GET, without a body) unless a body without form parameters is given.
      body: opts.kind ?? (opts.body && !opts.form ? 'json' : 'form'),
      rawBody: opts.body ?? noBody,
      formParams: opts.form ?? [],
    });

  test('When a form callback is signed with scheme B, then it verifies', () => {
    const sig = signFormParams('k1', `${base}/callbacks/cxml`, formPairs);
    expect(
      verify(['k1'], { 'x-signalwire-signature': sig }, { body: formBody, form: formPairs }),
    ).toMatchObject({ ok: true, scheme: 'B' });
  });

  test('When the signature comes as X-Twilio-Signature, then it verifies too', () => {
    const sig = signFormParams('k1', `${base}/callbacks/cxml`, formPairs);
    expect(
      verify(['k1'], { 'x-twilio-signature': sig }, { body: formBody, form: formPairs }).ok,
    ).toBe(true);
  });

  test('When a JSON callback is signed with scheme A, then it verifies', () => {
    const sig = signJsonBody('k1', `${base}/callbacks/native`, jsonBody);
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native', body: jsonBody },
      ),
    ).toMatchObject({ ok: true, scheme: 'A' });
  });

  test('When keys rotate, then a signature by any configured key verifies', () => {
    const sig = signJsonBody('new-key', `${base}/callbacks/native`, jsonBody);
    expect(
      verify(
        ['old-key', 'new-key'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native', body: jsonBody },
      ).ok,
    ).toBe(true);
    expect(
      verify(
        ['old-key'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native', body: jsonBody },
      ),
    ).toMatchObject({ ok: false, reason: 'mismatch' });
  });

  test('When SignalWire signed the URL with the default port, then it still verifies', () => {
    const sig = signJsonBody('k1', 'https://hooks.example.com:443/callbacks/native', jsonBody);
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native', body: jsonBody },
      ).ok,
    ).toBe(true);
  });

  test('When the query string is part of the URL, then it is signed as given and tampering fails', () => {
    const sig = signJsonBody('k1', `${base}/callbacks/native?tenant=a`, jsonBody);
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native?tenant=a', body: jsonBody },
      ).ok,
    ).toBe(true);
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native?tenant=b', body: jsonBody },
      ).ok,
    ).toBe(false);
  });

  test('When the body is changed after signing, then it fails', () => {
    const sig = signJsonBody('k1', `${base}/callbacks/native`, jsonBody);
    const tampered = Buffer.from('{"id":"abc","status":"delivered"}');
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sig },
        { path: '/callbacks/native', body: tampered },
      ).ok,
    ).toBe(false);
  });

  test('When the URL carries bodySHA256, then the URL signature and the body hash must both match', () => {
    const path = `/callbacks/cxml?bodySHA256=${sha256Hex(jsonBody)}`;
    const sig = signFormParams('k1', base + path, []);
    expect(
      verify(['k1'], { 'x-signalwire-signature': sig }, { path, body: jsonBody }),
    ).toMatchObject({ ok: true, scheme: 'B+bodySHA256' });
    expect(RestClient.validateRequestWithBody('k1', sig, base + path, jsonBody.toString())).toBe(
      true,
    );
    expect(
      verify(['k1'], { 'x-signalwire-signature': sig }, { path, body: Buffer.from('{}') }),
    ).toMatchObject({ ok: false, reason: 'body_hash_mismatch' });
  });

  test('When the SHA-256 header is present, then it must verify', () => {
    const url = `${base}/callbacks/native`;
    const sha1 = signJsonBody('k1', url, jsonBody);
    const sha256 = signSha256('k1', url, jsonBody);
    const path = { path: '/callbacks/native', body: jsonBody };
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sha1, 'x-signalwire-sha256-signature': sha256 },
        path,
      ).ok,
    ).toBe(true);
    expect(verify(['k1'], { 'x-signalwire-sha256-signature': sha256 }, path)).toMatchObject({
      ok: true,
      scheme: 'SHA256',
    });
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-signature': sha1, 'x-signalwire-sha256-signature': 'ab'.repeat(32) },
        path,
      ),
    ).toMatchObject({ ok: false, reason: 'sha256_mismatch' });
  });

  test('When several keys are configured, then the index of the key that verified is returned', () => {
    const sig = signFormParams('k2', `${base}/callbacks/cxml`, formPairs);
    expect(
      verify(
        ['k1', 'k2', 'k3'],
        { 'x-signalwire-signature': sig },
        { body: formBody, form: formPairs },
      ),
    ).toMatchObject({ ok: true, scheme: 'B', keyIndex: 1 });
    const hex = signJsonBody('k3', `${base}/callbacks/native`, jsonBody);
    expect(
      verify(
        ['k1', 'k2', 'k3'],
        { 'x-signalwire-signature': hex },
        { path: '/callbacks/native', body: jsonBody },
      ),
    ).toMatchObject({ ok: true, scheme: 'A', keyIndex: 2 });
  });

  test('When a genuine form signature is re-sent as hex over a form body equal to the signed string, then it does not verify', () => {
    // Scheme B signs url + k1v1k2v2…; scheme A signs url + raw body, with the same HMAC-SHA1.
    const url = `${base}/callbacks/cxml`;
    const genuine = signFormParams('k1', url, formPairs);
    const asHex = Buffer.from(genuine, 'base64').toString('hex');
    const signedString = Buffer.from('MessageSidabcMessageStatussent');
    expect(signJsonBody('k1', url, signedString)).toBe(asHex); // the forgery's premise
    const form = [...new URLSearchParams(signedString.toString())];
    expect(
      verify(['k1'], { 'x-signalwire-signature': asHex }, { body: signedString, form }),
    ).toMatchObject({ ok: false, reason: 'mismatch' });
  });

  test('When a JSON body comes with a base64 signature over the URL alone, then it does not verify', () => {
    const path = '/callbacks/native';
    const overUrl = signFormParams('k1', base + path, []);
    expect(
      verify(['k1'], { 'x-signalwire-signature': overUrl }, { path, body: jsonBody }),
    ).toMatchObject({ ok: false, reason: 'mismatch' });
    // The same signature still verifies what it was made for: a GET without body parameters.
    expect(verify(['k1'], { 'x-signalwire-signature': overUrl }, { path, kind: 'form' }).ok).toBe(
      true,
    );
  });

  test('When a form body carries only the SHA-256 header, then it does not verify (scheme B is required)', () => {
    const url = `${base}/callbacks/cxml`;
    const sha256 = signSha256('k1', url, formBody);
    expect(
      verify(
        ['k1'],
        { 'x-signalwire-sha256-signature': sha256 },
        { body: formBody, form: formPairs },
      ),
    ).toMatchObject({ ok: false });
  });

  test('When no signature header is sent, then the reason is missing', () => {
    expect(verify(['k1'], {})).toMatchObject({ ok: false, reason: 'missing' });
  });

  test('When a forged form is tried against every key and candidate URL, then its parameters are sorted once', () => {
    // 3 keys × 4 candidate URLs (a written spelling with :443): each try sorted the 1,000
    // parameters again, 12 sorts of the largest body the limits allow.
    const keys = ['k1', 'k2', 'k3'];
    const written = 'https://Hooks.Example.com:443/sw';
    const form: Array<[string, string]> = Array.from({ length: 1000 }, (_, i) => [
      `p${(i * 7919) % 1000}`,
      String(i),
    ]);
    const request = {
      headers: { 'x-signalwire-signature': 'Zm9yZ2VkZm9yZ2VkZm9yZ2VkZm9yZ2U=' },
      originalUrl: '/callbacks/cxml',
      body: 'form' as const,
      rawBody: Buffer.from(new URLSearchParams(form).toString()),
      formParams: form,
    };
    expect(candidateUrlsFor(written, '/callbacks/cxml')).toHaveLength(4);
    const sort = jest.spyOn(Array.prototype, 'sort');
    try {
      expect(verifySignature(keys, written, request)).toMatchObject({ ok: false });
      expect(sort).toHaveBeenCalledTimes(1);
    } finally {
      sort.mockRestore();
    }
    // And the one sorted string is what each of them signs: the last key and URL still verify.
    const genuine = signFormParams('k3', 'https://Hooks.Example.com/sw/callbacks/cxml', form);
    const signed = { ...request, headers: { 'x-signalwire-signature': genuine } };
    expect(verifySignature(keys, written, signed)).toMatchObject({ ok: true, keyIndex: 2 });
  });
});

describe('candidateUrlsFor', () => {
  test('When the base URL has no port, then the default-port variant is also tried', () => {
    expect(candidateUrlsFor('https://hooks.example.com', '/callbacks/cxml?a=1')).toEqual([
      'https://hooks.example.com/callbacks/cxml?a=1',
      'https://hooks.example.com:443/callbacks/cxml?a=1',
    ]);
  });

  test('When the base URL has a path prefix and a custom port, then the prefix is kept and the URL is also tried without the port (as the official SDK does)', () => {
    expect(candidateUrlsFor('http://10.0.0.1:8080/sw/', '/callbacks/native')).toEqual([
      'http://10.0.0.1:8080/sw/callbacks/native',
      'http://10.0.0.1/sw/callbacks/native',
    ]);
  });

  test('When the base URL is not written in canonical form, then it is also tried as written (the proxy gives SignalWire that spelling)', () => {
    expect(candidateUrlsFor('https://Hooks.Example.com/SW', '/callbacks/cxml')).toEqual([
      'https://hooks.example.com/SW/callbacks/cxml',
      'https://hooks.example.com:443/SW/callbacks/cxml',
      'https://Hooks.Example.com/SW/callbacks/cxml',
      'https://Hooks.Example.com:443/SW/callbacks/cxml',
    ]);
  });

  test('When the base URL is written with its default port and not in canonical form, then it is also tried as written without that port', () => {
    expect(candidateUrlsFor('https://Hooks.Example.com:443/SW/', '/callbacks/cxml')).toEqual([
      'https://hooks.example.com/SW/callbacks/cxml',
      'https://hooks.example.com:443/SW/callbacks/cxml',
      'https://Hooks.Example.com:443/SW/callbacks/cxml',
      'https://Hooks.Example.com/SW/callbacks/cxml',
    ]);
    // A port that is not the default: with it and without it, the host as written or not.
    expect(candidateUrlsFor('http://LB.example:8080', '/callbacks/cxml')).toEqual([
      'http://lb.example:8080/callbacks/cxml',
      'http://lb.example/callbacks/cxml',
      'http://LB.example:8080/callbacks/cxml',
      'http://LB.example/callbacks/cxml',
    ]);
  });

  test('When the base URL is an IPv6 literal, then its brackets are not doubled and the default-port variant verifies', () => {
    expect(candidateUrlsFor('http://[2001:db8::1]', '/callbacks/cxml')).toEqual([
      'http://[2001:db8::1]/callbacks/cxml',
      'http://[2001:db8::1]:80/callbacks/cxml',
    ]);
    const fields: Array<[string, string]> = [
      ['MessageSid', 'm1'],
      ['MessageStatus', 'sent'],
    ];
    const url = 'http://[2001:db8::1]:80/callbacks/cxml';
    const result = verifySignature(['PSK_ipv6_key'], 'http://[2001:db8::1]', {
      headers: { 'x-signalwire-signature': signFormParams('PSK_ipv6_key', url, fields) },
      originalUrl: '/callbacks/cxml',
      body: 'form',
      rawBody: Buffer.from(new URLSearchParams(fields).toString()),
      formParams: fields,
    });
    expect(result.ok).toBe(true);
  });
});
