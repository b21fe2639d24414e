// Edge cases of src/callbacks/signature.ts: each test kills mutants that survived
// test/unit/signature*.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import { verifySignature } from '../../src/callbacks/signature';
import { sha256Hex, signFormParams, signJsonBody, signSha256 } from '../../src/signalwire/signing';

const base = 'https://hooks.example.com';
const formPairs: Array<[string, string]> = [
  ['MessageSid', 'abc'],
  ['MessageStatus', 'sent'],
];
const formBody = Buffer.from(new URLSearchParams(formPairs).toString());
const jsonBody = Buffer.from('{"id":"abc","status":"delivered"}');

const verify = (
  headers: Record<string, string>,
  opts: { path: string; body: Buffer; kind: 'form' | 'json'; form?: Array<[string, string]> },
) =>
  verifySignature(['k1'], base, {
    headers,
    originalUrl: opts.path,
    body: opts.kind,
    rawBody: opts.body,
    formParams: opts.form ?? [],
  });

describe('verifySignature (edge cases)', () => {
  test('When a JSON body matches the URL bodySHA256 but the URL signature is forged, then it is refused as a mismatch', () => {
    // Anyone can hash a body: the bodySHA256 proves nothing without the URL's signature.
    // (Mutant `if (matchB)` → `if (true)` accepted this with scheme B+bodySHA256.)
    const path = `/callbacks/native?bodySHA256=${sha256Hex(jsonBody)}`;
    const forged = signFormParams('not-the-key', base + path, []);
    const result = verify(
      { 'x-signalwire-signature': forged },
      { path, body: jsonBody, kind: 'json' },
    );
    expect(result).toMatchObject({ ok: false, reason: 'mismatch' });
  });

  test('When a form callback carries a valid SHA-256 header and a valid scheme B signature, then it verifies with scheme B', () => {
    const url = `${base}/callbacks/cxml`;
    const headers = {
      'x-signalwire-signature': signFormParams('k1', url, formPairs),
      'x-signalwire-sha256-signature': signSha256('k1', url, formBody),
    };
    expect(
      verify(headers, { path: '/callbacks/cxml', body: formBody, kind: 'form', form: formPairs }),
    ).toMatchObject({
      ok: true,
      scheme: 'B',
      keyIndex: 0,
    });
  });

  test('When a JSON callback carries a valid SHA-256 header and a forged SHA-1 signature, then it is refused', () => {
    // Both headers present: both must verify (the SHA-256 one alone does not short-cut).
    const url = `${base}/callbacks/native`;
    const headers = {
      'x-signalwire-signature': signJsonBody('not-the-key', url, jsonBody),
      'x-signalwire-sha256-signature': signSha256('k1', url, jsonBody),
    };
    expect(
      verify(headers, { path: '/callbacks/native', body: jsonBody, kind: 'json' }),
    ).toMatchObject({
      ok: false,
      reason: 'mismatch',
    });
    headers['x-signalwire-signature'] = signJsonBody('k1', url, jsonBody);
    expect(
      verify(headers, { path: '/callbacks/native', body: jsonBody, kind: 'json' }),
    ).toMatchObject({
      ok: true,
      scheme: 'A',
    });
  });

  test('When a form body has only a valid SHA-256 header, then the reason is mismatch', () => {
    const url = `${base}/callbacks/cxml`;
    const headers = { 'x-signalwire-sha256-signature': signSha256('k1', url, formBody) };
    expect(
      verify(headers, { path: '/callbacks/cxml', body: formBody, kind: 'form', form: formPairs }),
    ).toEqual({
      ok: false,
      reason: 'mismatch',
      candidateUrls: expect.any(Array),
    });
  });

  test('When the request target holds a `{`, then the reason is mismatch', () => {
    const path = '/callbacks/native?x={';
    const sig = signJsonBody('k1', base + path, jsonBody);
    expect(
      verify({ 'x-signalwire-signature': sig }, { path, body: jsonBody, kind: 'json' }),
    ).toEqual({
      ok: false,
      reason: 'mismatch',
      candidateUrls: expect.any(Array),
    });
  });

  test('When X-SignalWire-Signature is empty and X-Twilio-Signature holds the signature, then the alias verifies', () => {
    const sig = signJsonBody('k1', `${base}/callbacks/native`, jsonBody);
    expect(
      verify(
        { 'x-signalwire-signature': '', 'x-twilio-signature': sig },
        { path: '/callbacks/native', body: jsonBody, kind: 'json' },
      ),
    ).toMatchObject({ ok: true, scheme: 'A' });
  });
});
