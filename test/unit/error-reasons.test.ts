import { errorReason } from '../../src/messages/error-reasons';

describe('errorReason', () => {
  test('When there is no code, then there is no reason', () => {
    expect(errorReason('cxml', null)).toBeNull();
    expect(errorReason('native', null)).toBeNull();
  });

  test.each([
    ['30003', 'Destination handset unreachable'],
    ['30007', 'Flagged as a carrier violation (filtered content)'],
    ['21610', 'Blocked by the recipient, or sent from a blacklisted number'],
  ])('When the compatibility API reports %s, then the reason is SignalWire’s', (code, reason) => {
    expect(errorReason('cxml', code)).toBe(reason);
  });

  test('When a numeric code means something else at Twilio, then SignalWire’s meaning is given', () => {
    // Twilio: 30001 queue overflow, 30002 account suspended, 30009 missing inbound segment.
    expect(errorReason('cxml', '30001')).toMatch(/validity period/i);
    expect(errorReason('cxml', '30002')).toMatch(/balance/i);
    expect(errorReason('cxml', '30009')).toMatch(/validity period expired at the carrier/i);
  });

  test('When the native API reports a string code, or a numeric one from a message log, then both are known', () => {
    expect(errorReason('native', 'message_filtered')).toBe("Blocked by SignalWire's spam filter");
    expect(errorReason('native', '30003')).toBe('Destination handset unreachable');
  });

  test('When the compatibility API reports a native string code, then no reason is guessed', () => {
    expect(errorReason('cxml', 'carrier_violation')).toBeNull();
  });

  test('When a code is unknown or names an object property, then the reason is null', () => {
    for (const code of ['99999', 'teleported', '__proto__', 'toString', 'constructor', '']) {
      expect(errorReason('cxml', code)).toBeNull();
      expect(errorReason('native', code)).toBeNull();
    }
  });
});
