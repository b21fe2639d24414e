// Edge cases of src/callbacks/form-resplit.ts: each test kills mutants that survived
// test/unit/form-resplit.property.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import { signedFormMayBeResplit } from '../../src/callbacks/form-resplit';
import { signedFormParams } from '../../src/signalwire/signing';

type Pairs = Array<[string, string]>;

const PATH = '/callbacks/cxml';
const OWN = '11111111-2222-4333-8444-555555555555';
const VICTIM = '0b9c6a4e-7d1f-4c2a-9e3b-5f6a7b8c9d0e';
const ACCOUNT = '99999999-8888-4777-8666-555555555555';

/** A genuine callback, fields in SignalWire's order; its Body written by the attacker. */
function genuine(body: string): Pairs {
  return [
    ['MessageSid', OWN],
    ['MessageStatus', 'delivered'],
    ['AccountSid', ACCOUNT],
    ['From', '+15551234567'],
    ['To', '+15557654321'],
    ['Body', body],
  ];
}

describe('form re-split (edge cases)', () => {
  test.each([
    ['MessageSid', 'SmsSid'],
    ['MessageSid', 'SmsMessageSid'],
    ['SmsSid', 'SmsMessageSid'],
  ])('When %s and %s name different messages, then the form is refused', (a, b) => {
    expect(
      signedFormMayBeResplit(PATH, [
        [a, OWN],
        [b, VICTIM],
        ['MessageStatus', 'sent'],
      ]),
    ).toBe(true);
    expect(
      signedFormMayBeResplit(PATH, [
        [a, OWN],
        [b, OWN],
        ['MessageStatus', 'sent'],
      ]),
    ).toBe(false);
    // As a GET too.
    expect(
      signedFormMayBeResplit(`${PATH}?${a}=${OWN}&${b}=${VICTIM}&MessageStatus=sent`, null),
    ).toBe(true);
  });

  test('When MessageStatus and SmsStatus differ, then the form is refused', () => {
    const form: Pairs = [
      ['MessageSid', OWN],
      ['MessageStatus', 'failed'],
      ['SmsStatus', 'delivered'],
    ];
    expect(signedFormMayBeResplit(PATH, form)).toBe(true);
    expect(
      signedFormMayBeResplit(PATH, [
        ['MessageSid', OWN],
        ['MessageStatus', 'sent'],
        ['SmsStatus', 'sent'],
      ]),
    ).toBe(false);
  });

  test('When a verified re-split is sent with its fields in another order, then it is refused as in sorted order', () => {
    // The signature sorts the fields, so their order on the wire is the attacker's choice.
    const text = `hiMessageSid${VICTIM}MessageStatusfailedZ`;
    const signed = signedFormParams(genuine(text));
    const tail = signed.slice(signed.indexOf('failedZ') + 'failedZ'.length);
    const forged: Pairs = [
      ['AccountSid', ACCOUNT],
      ['Body', 'hi'],
      ['MessageSid', VICTIM],
      ['MessageStatus', 'failed'],
      ['Z', tail],
    ];
    expect(signedFormParams(forged)).toBe(signed); // it verifies
    expect(signedFormMayBeResplit(PATH, forged)).toBe(true);
    expect(signedFormMayBeResplit(PATH, [...forged].reverse())).toBe(true);
    expect(
      signedFormMayBeResplit(PATH, [forged[4]!, forged[2]!, forged[0]!, forged[3]!, forged[1]!]),
    ).toBe(true);
    // And the genuine callback, in any order, passes.
    expect(signedFormMayBeResplit(PATH, genuine(text))).toBe(false);
    expect(signedFormMayBeResplit(PATH, [...genuine(text)].reverse())).toBe(false);
  });

  test('When a name forms only across two fields in sorted order, then it is seen whatever order they came in', () => {
    // Signed as "QxAccountSid1": AccountSid glued across a value and a key.
    expect(
      signedFormMayBeResplit(PATH, [
        ['Q', 'xAccount'],
        ['Sid', '1'],
      ]),
    ).toBe(true);
    expect(
      signedFormMayBeResplit(PATH, [
        ['Sid', '1'],
        ['Q', 'xAccount'],
      ]),
    ).toBe(true);
  });

  test('When a name is repeated, then its values are checked in the order given (the signature is stable)', () => {
    // Signed "SidxAccountSid1": AccountSid across the first value and the second key.
    expect(
      signedFormMayBeResplit(PATH, [
        ['Sid', 'xAccount'],
        ['Sid', '1'],
      ]),
    ).toBe(true);
    // Signed "Sid1SidxAccount": no name.
    expect(
      signedFormMayBeResplit(PATH, [
        ['Sid', '1'],
        ['Sid', 'xAccount'],
      ]),
    ).toBe(false);
  });

  test('When a name starts inside Body and runs on into the next key, then it is refused', () => {
    // "BodyhiMessageSid…": MessageSid glued across Body's end and the key after it.
    expect(
      signedFormMayBeResplit(PATH, [
        ['Body', 'hiMessage'],
        ['Sid', VICTIM],
      ]),
    ).toBe(true);
    expect(signedFormMayBeResplit(`${PATH}?Body=hiMessage&Sid=${VICTIM}`, null)).toBe(false);
    expect(
      signedFormMayBeResplit(PATH, [
        ['Body', 'hiMessageSid'],
        ['X', VICTIM],
      ]),
    ).toBe(false);
  });

  test('When a GET query has a bare key that is a name, then it is a key of its own', () => {
    expect(
      signedFormMayBeResplit(`${PATH}?AccountSid&MessageSid=${OWN}&MessageStatus=sent`, null),
    ).toBe(false);
  });

  test('When the check runs, then the caller’s form is left in its order', () => {
    const form: Pairs = [
      ['MessageSid', OWN],
      ['AccountSid', ACCOUNT],
      ['Body', 'x'],
    ];
    const copy = form.map(([n, v]) => [n, v]);
    signedFormMayBeResplit(PATH, form);
    expect(form).toEqual(copy);
  });
});
