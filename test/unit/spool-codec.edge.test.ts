// Edge cases of src/ingest/spool-codec.ts: a spool line that is not a valid record is skipped
// (undefined), not replayed. Kills mutants that survived test/unit/spool-codec*.property.test.ts
// (StrykerJS, 2026-12-07). Pure, no database.
import { decodeSpoolLine, encodeSpoolLine } from '../../src/ingest/spool-codec';
import { statusEvent } from '../factories';

describe('spool codec (edge cases)', () => {
  test('When a line is cut short or not JSON (a crash mid-write), then it is not a record', () => {
    const line = encodeSpoolLine(statusEvent('sent'));
    expect(decodeSpoolLine(line)).toBeDefined();
    expect(decodeSpoolLine(line.slice(0, line.length - 5))).toBeUndefined();
    expect(decodeSpoolLine('')).toBeUndefined();
  });

  test('When a record’s raw payload is not a JSON object, then the line is not a record', () => {
    const record = JSON.parse(encodeSpoolLine(statusEvent('sent'))) as {
      v: 1;
      event: Record<string, unknown>;
    };
    for (const raw of [null, [], ['MessageStatus', 'sent'], 'x', 5]) {
      const line = JSON.stringify({ ...record, event: { ...record.event, raw } });
      expect(decodeSpoolLine(line)).toBeUndefined();
    }
  });
});
