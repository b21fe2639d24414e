import fc from 'fast-check';
import { verifySignature } from '../../src/callbacks/signature';
import { formFields, formParametersExceed, jsonNestingExceeds } from '../../src/http/body-limits';
import { sha256Hex, signFormParams, signJsonBody } from '../../src/signalwire/signing';

/**
 * Properties of the parsing limits and of signature verification, over arbitrary and
 * adversarial inputs: the cheap pre-checks agree exactly with what the real parsers would
 * find, and a signature verifies only for the kind of body it was made for.
 */

// Text made of the characters forms and JSON care about, so separators and brackets collide.
const formText = fc.string({
  unit: fc.constantFrom('a', 'b', '=', '&', '%', '+', '2', '0', 'é', '\u0000', ' '),
  maxLength: 300,
});
const anyText = fc.string({ unit: 'binary', maxLength: 200 });

/** The depth of a JSON value as a parser sees it: each object or array is one level. */
function depth(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((max, child) => Math.max(max, depth(child)), 0);
}

/** A JSON value nested `levels` deep along one path, with arbitrary siblings. */
const deepJson = fc
  .tuple(fc.integer({ min: 0, max: 150 }), fc.array(fc.constantFrom('[', '{')), fc.jsonValue())
  .map(([levels, kinds, leaf]) => {
    let value: unknown = leaf;
    for (let i = 0; i < levels; i++) {
      value = kinds[i % Math.max(1, kinds.length)] === '{' ? { k: value, s: '[{"' } : [value, ']'];
    }
    return value;
  });

describe('form parameter counting', () => {
  test('When any text is counted, then it agrees with URLSearchParams at every limit', () => {
    fc.assert(
      fc.property(fc.oneof(formText, anyText), fc.integer({ min: 0, max: 20 }), (text, max) => {
        const actual = [...new URLSearchParams(text)].length;
        expect(formParametersExceed(text, max)).toBe(actual > max);
      }),
      { numRuns: 500 },
    );
  });

  test('When pairs become fields, then each key holds its values in order and nothing else', () => {
    const pairs = fc.array(
      fc.tuple(
        fc.constantFrom('a', 'b', '__proto__', 'constructor', 'toString', 'hasOwnProperty'),
        fc.string({ maxLength: 5 }),
      ),
      { maxLength: 50 },
    );
    fc.assert(
      fc.property(pairs, (list) => {
        const fields = formFields(list);
        const keys = [...new Set(list.map(([key]) => key))];
        expect(Object.keys(fields).sort()).toEqual(keys.sort());
        for (const key of keys) {
          const values = list.filter(([k]) => k === key).map(([, v]) => v);
          expect(fields[key]).toEqual(values.length === 1 ? values[0] : values);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('JSON nesting', () => {
  test('When any JSON value is serialised, then the pre-scan finds exactly its depth', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue(), deepJson),
        fc.integer({ min: 0, max: 100 }),
        (value, max) => {
          expect(jsonNestingExceeds(JSON.stringify(value), max)).toBe(depth(value) > max);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('When the text is not JSON at all, then the pre-scan still terminates with an answer', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        expect(typeof jsonNestingExceeds(text, 64)).toBe('boolean');
      }),
    );
  });
});

describe('signature verification: the scheme follows the body', () => {
  const base = 'https://hooks.example.com';
  const keys = ['PSK_old', 'PSK_current'];
  const params = fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 20 })), {
    maxLength: 12,
  });
  const path = fc.stringMatching(
    /^\/callbacks\/(cxml|native)(\/[A-Za-z0-9_.-]{1,40})?(\?[a-z=&0-9]{0,20})?$/,
  );

  test('When a form is signed with scheme B by any configured key, then it verifies as a form, never as JSON', () => {
    fc.assert(
      fc.property(params, path, fc.integer({ min: 0, max: 1 }), (pairs, originalUrl, keyIndex) => {
        const signature = signFormParams(keys[keyIndex]!, base + originalUrl, pairs);
        const rawBody = Buffer.from(new URLSearchParams(pairs).toString());
        const request = { headers: { 'x-signalwire-signature': signature }, originalUrl, rawBody };
        expect(
          verifySignature(keys, base, { ...request, body: 'form', formParams: pairs }),
        ).toMatchObject({ ok: true, scheme: 'B', keyIndex });
        expect(verifySignature(keys, base, { ...request, body: 'json', formParams: [] }).ok).toBe(
          false,
        );
      }),
      { numRuns: 300 },
    );
  });

  test('When a signed form is re-sent with its MAC re-encoded as hex over the signed string, then it never verifies', () => {
    fc.assert(
      fc.property(params, path, (pairs, originalUrl) => {
        const genuine = signFormParams(keys[1]!, base + originalUrl, pairs);
        const hex = Buffer.from(genuine, 'base64').toString('hex');
        const signedString = [...pairs]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, v]) => k + v)
          .join('');
        const rawBody = Buffer.from(signedString);
        const headers = { 'x-signalwire-signature': hex };
        const asForm = [...new URLSearchParams(signedString)];
        expect(
          verifySignature(keys, base, {
            headers,
            originalUrl,
            rawBody,
            body: 'form',
            formParams: asForm,
          }).ok,
        ).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  test('When a JSON body is signed with scheme A, then it verifies as JSON; any other body or signature does not', () => {
    fc.assert(
      fc.property(fc.jsonValue(), path, anyText, (value, originalUrl, other) => {
        const body = JSON.stringify(value) ?? 'null';
        const signature = signJsonBody(keys[0]!, base + originalUrl, body);
        const verify = (raw: string, sig: string, kind: 'form' | 'json') =>
          verifySignature(keys, base, {
            headers: { 'x-signalwire-signature': sig },
            originalUrl,
            rawBody: Buffer.from(raw),
            body: kind,
            formParams: kind === 'form' ? [...new URLSearchParams(raw)] : [],
          });
        expect(verify(body, signature, 'json')).toMatchObject({
          ok: true,
          scheme: 'A',
          keyIndex: 0,
        });
        expect(verify(body, signature, 'form').ok).toBe(false);
        if (other !== body) expect(verify(other, signature, 'json').ok).toBe(false);
        // The URL-only signature (what a GET carries) never authenticates a JSON body
        // unless the URL binds the body by its hash.
        const overUrl = signFormParams(keys[0]!, base + originalUrl, []);
        expect(verify(body, overUrl, 'json').ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  test('When the URL binds a JSON body by bodySHA256, then only that body verifies with the URL signature', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (value, other) => {
        const body = JSON.stringify(value) ?? 'null';
        const otherBody = JSON.stringify(other) ?? 'null';
        const originalUrl = `/callbacks/native?bodySHA256=${sha256Hex(body)}`;
        const signature = signFormParams(keys[1]!, base + originalUrl, []);
        const verify = (raw: string) =>
          verifySignature(keys, base, {
            headers: { 'x-signalwire-signature': signature },
            originalUrl,
            rawBody: Buffer.from(raw),
            body: 'json',
            formParams: [],
          }).ok;
        expect(verify(body)).toBe(true);
        if (otherBody !== body) expect(verify(otherBody)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});
