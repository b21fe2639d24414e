import fc from 'fast-check';
import { verifySignature } from '../../src/callbacks/signature';
import { sha256Hex, signJsonBody } from '../../src/signalwire/signing';

/**
 * Whatever a signed JSON body holds — the attacker writes part of it: a message's text — its
 * signature authenticates that body at that URL and nothing else: not a request whose URL
 * goes on with the body (a GET, or a JSON body named by a bodySHA256 the signed body
 * carried), which the same HMAC covers once re-encoded as base64.
 */

const KEY = 'PSK_property_key_0123456789';
const BASE = 'https://hooks.example.com';
const path = fc.constantFrom(
  '/callbacks/native',
  '/callbacks/cxml',
  '/callbacks/native/AAAAAAAAAAAAAAAA.t0k3n.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
  '/callbacks/cxml?app=1',
);
/** Text an attacker may put in a field: query syntax, a bodySHA256, anything. */
const text = fc.oneof(
  fc.string(),
  fc.string({ unit: fc.constantFrom('?', '&', '=', 'a', '%', '#', '/', '{', '}', '"', '+') }),
);
const forgedBody = fc
  .record({ id: fc.uuid(), status: fc.constantFrom('delivered', 'failed') })
  .map((value) => JSON.stringify(value));

const asBase64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64');

test('When a genuine JSON signature is replayed for its URL followed by its body, then nothing verifies but the genuine request', () => {
  fc.assert(
    fc.property(
      path,
      fc.dictionary(fc.string({ maxLength: 8 }), text, { maxKeys: 4 }),
      text,
      forgedBody,
      fc.boolean(),
      (signedPath, fields, before, forged, hashFirst) => {
        // The body carries the forged body's hash as query text, before or after other text.
        const query = `?bodySHA256=${sha256Hex(forged)}&x=`;
        const body = JSON.stringify({
          ...fields,
          body: hashFirst ? `${query}${before}` : `${before}${query}`,
        });
        const genuine = signJsonBody(KEY, BASE + signedPath, body);
        const verify = (
          originalUrl: string,
          kind: 'form' | 'json',
          rawBody: string,
          signature: string,
        ) =>
          verifySignature([KEY], BASE, {
            headers: { 'x-signalwire-signature': signature },
            originalUrl,
            body: kind,
            rawBody: Buffer.from(rawBody),
            formParams: [],
          }).ok;

        expect(verify(signedPath, 'json', body, genuine)).toBe(true);
        // A GET, whose signature covers its URL alone.
        expect(verify(signedPath + body, 'form', '', asBase64(genuine))).toBe(false);
        // A JSON body bound by the bodySHA256 in the URL.
        expect(verify(signedPath + body, 'json', forged, asBase64(genuine))).toBe(false);
      },
    ),
    { numRuns: 500 },
  );
});
