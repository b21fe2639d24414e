import fc from 'fast-check';
import { decodeSpoolLine, encodeSpoolLine } from '../../src/ingest/spool-codec';
import { statusEvent } from '../factories';

/**
 * A spooled callback must come back exactly as it was acknowledged: its payload is whatever
 * JSON SignalWire (or anyone holding a token) sent, including keys such as `__proto__` that
 * JSON.parse keeps as plain own properties. Decoding must neither drop them nor let them set
 * a prototype.
 */

const KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'];

const scalarText = fc.oneof(
  fc.constant('null'),
  fc.boolean().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.string().map((s) => JSON.stringify(s)),
);
const key = fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 }));

/** JSON text, so `__proto__` keys are made the way a request body makes them: by JSON.parse. */
const json = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, scalarText, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
  object: fc
    .array(fc.tuple(key, tie('value')), { maxLength: 5 })
    .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
}));

describe('spool codec', () => {
  test('When a payload holds a __proto__ key, then it decodes as an own key and no prototype changes', () => {
    const raw = JSON.parse('{"__proto__":{"polluted":true},"MessageStatus":"sent"}') as Record<
      string,
      unknown
    >;
    const decoded = decodeSpoolLine(encodeSpoolLine(statusEvent('sent', { raw })));
    expect(decoded).toBeDefined();
    expect(Object.getPrototypeOf(decoded!.raw)).toBe(Object.prototype);
    expect(Object.keys(decoded!.raw)).toEqual(['__proto__', 'MessageStatus']);
    expect(JSON.stringify(decoded!.raw)).toBe(JSON.stringify(raw));
    expect((decoded!.raw as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  test('When any JSON object payload is spooled, then it decodes exactly as JSON.parse made it', () => {
    fc.assert(
      fc.property(json.object, (text) => {
        const raw = JSON.parse(text) as Record<string, unknown>;
        const event = statusEvent('delivered', { raw });
        const decoded = decodeSpoolLine(encodeSpoolLine(event));
        expect(decoded).toBeDefined();
        expect(JSON.stringify(decoded!.raw)).toBe(JSON.stringify(raw));
        expect(Object.getPrototypeOf(decoded!.raw)).toBe(Object.prototype);
        expect(decoded!.messageId).toBe(event.messageId);
        expect(decoded!.receivedAt.getTime()).toBe(event.receivedAt.getTime());
      }),
      { numRuns: 500 },
    );
    expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain('polluted');
  });
});
