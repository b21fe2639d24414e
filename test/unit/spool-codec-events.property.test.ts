import fc from 'fast-check';
import { decodeSpoolLine, encodeSpoolLine } from '../../src/ingest/spool-codec';
import { dedupeKey } from '../../src/messages/status-event';
import type { StatusEvent } from '../../src/messages/status-event';
import { CANONICAL_STATUSES } from '../../src/messages/statuses';

/**
 * An event spooled during an outage is replayed later, maybe by another process: it must come
 * back exactly as it was acknowledged — every field, whatever text it holds (lone surrogates,
 * NUL, line separators, newlines), every instant PostgreSQL can store — and as bytes on disk,
 * not only as a string: the line is written as UTF-8, which has no lone surrogates, and split
 * on newlines. Its dedupe key must be the same after replay, or a replayed callback would be
 * stored twice.
 */

// Any UTF-16 code units: lone surrogates, NUL, U+2028, newlines.
const anyText = fc.string({ unit: 'binary', maxLength: 24 });
const oddText = fc.oneof(
  anyText,
  fc.constantFrom('\ud800', '\udfff', 'a\u0000b', '\u2028\u2029', '\n', '\r\n', '"\\', '\ufeff'),
);
const nullableText = fc.option(oddText, { nil: null });
// Years 0001–9999 (what the normalizer lets through), to the millisecond.
const instant = fc
  .integer({
    min: Date.parse('0001-01-01T00:00:00.000Z'),
    max: Date.parse('9999-12-31T23:59:59.999Z'),
  })
  .map((ms) => new Date(ms));
const count = fc.option(fc.integer({ min: 0, max: 999_999 }), { nil: null });
const raw = fc.dictionary(
  fc.oneof(oddText, fc.constantFrom('__proto__', 'constructor', 'toJSON', 'Body')),
  fc.jsonValue(),
  { maxKeys: 6 },
);

const event: fc.Arbitrary<StatusEvent> = fc.record(
  {
    messageId: fc.string({ unit: 'binary', minLength: 1, maxLength: 64 }),
    api: fc.constantFrom('cxml' as const, 'native' as const),
    source: fc.constantFrom(
      'proxy' as const,
      'callback' as const,
      'reconcile' as const,
      'replay' as const,
    ),
    projectId: nullableText,
    status: fc.constantFrom(...CANONICAL_STATUSES),
    rawStatus: oddText,
    errorCode: nullableText,
    errorMessage: nullableText,
    from: nullableText,
    to: nullableText,
    numSegments: count,
    numMedia: count,
    providerTimestamp: fc.option(instant, { nil: null }),
    receivedAt: instant,
    raw,
    tokenRef: fc.string({ unit: 'binary', maxLength: 20 }),
    tokenLegacy: fc.boolean(),
    verifiedKeyIndex: fc.nat({ max: 9 }),
    send: fc.record({
      ref: fc.option(anyText, { nil: null }),
      kind: fc.constantFrom('sms' as const, 'mms' as const, null),
      clientStatusCallback: nullableText,
      body: nullableText,
    }),
    relay: fc.record({
      method: fc.constantFrom('POST' as const, 'GET' as const),
      contentType: nullableText,
      body: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes).toString('base64')),
      keyRef: fc.option(fc.stringMatching(/^[0-9a-f]{16}$/), { nil: null }),
    }),
  },
  {
    requiredKeys: [
      'messageId',
      'api',
      'source',
      'projectId',
      'status',
      'rawStatus',
      'errorCode',
      'errorMessage',
      'from',
      'to',
      'numSegments',
      'numMedia',
      'providerTimestamp',
      'receivedAt',
      'raw',
    ],
  },
);

/** The line as a file holds it: UTF-8 bytes, read back as text. */
function throughDisk(line: string): string {
  return Buffer.from(line, 'utf8').toString('utf8');
}

test('When any event is spooled and read back from disk, then it is the same event with the same dedupe key', () => {
  fc.assert(
    fc.property(event, (original) => {
      const line = encodeSpoolLine(original);
      // One line: its only newline is the last character.
      expect(line.indexOf('\n')).toBe(line.length - 1);
      const stored = throughDisk(line);
      expect(stored).toBe(line);

      const decoded = decodeSpoolLine(stored.slice(0, -1));
      expect(decoded).toBeDefined();
      const { raw: decodedRaw, ...fields } = decoded!;
      const { raw: originalRaw, ...expected } = original;
      expect(fields).toEqual(expected);
      expect(JSON.stringify(decodedRaw)).toBe(JSON.stringify(originalRaw));
      expect(Object.keys(decodedRaw)).toEqual(Object.keys(originalRaw));
      expect(dedupeKey(decoded!).equals(dedupeKey(original))).toBe(true);
    }),
    { numRuns: 1_000 },
  );
});
