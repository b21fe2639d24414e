import fc from 'fast-check';
import { signedFormMayBeResplit } from '../../src/callbacks/form-resplit';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { formFields } from '../../src/http/body-limits';
import { signedFormParams } from '../../src/signalwire/signing';

/**
 * Scheme B signs the sorted names and values with no separators (src/callbacks/form-resplit.ts):
 * a genuine callback, whatever text its Body holds, is never taken for a re-split; and any
 * other split of its signed string that verifies (sorts back to the same string) and names
 * another message or status is refused.
 */

type Pairs = Array<[string, string]>;

const VICTIM = '0b9c6a4e-7d1f-4c2a-9e3b-5f6a7b8c9d0e';
const PATH = '/callbacks/cxml';

/** Text a sender may write: the names that matter, query syntax, another message's id. */
const textUnit = fc.constantFrom(
  'MessageSid',
  'MessageStatus',
  'SmsSid',
  'SmsStatus',
  'SmsMessageSid',
  'AccountSid',
  'Sms',
  'Message',
  'Body',
  'failed',
  VICTIM,
  'a',
  'Z',
  'N',
  '0',
  ' ',
  '+',
  '&',
  '=',
  '?',
  '%',
);
const text = fc.string({ unit: textUnit, maxLength: 10 });
/** Text around the pairs a forger writes: none of the names. */
const plainText = fc.string({ unit: fc.constantFrom('a', '0', ' ', '&', '=', '+'), maxLength: 6 });

/** A genuine compatibility callback: SignalWire's fields, legacy names or not, any text. */
const genuine = fc
  .record({
    id: fc.uuid(),
    status: fc.constantFrom('queued', 'sent', 'delivered', 'undelivered', 'failed'),
    account: fc.uuid(),
    errorCode: fc.option(fc.constantFrom('30003', '30008')),
    names: fc.constantFrom('current', 'legacy only', 'both'),
    apiVersion: fc.boolean(),
    body: text,
  })
  .map(({ id, status, account, errorCode, names, apiVersion, body }) => {
    const pairs: Pairs = [];
    if (names !== 'legacy only') pairs.push(['MessageSid', id], ['MessageStatus', status]);
    if (errorCode !== null) pairs.push(['ErrorCode', errorCode]);
    pairs.push(
      ['AccountSid', account],
      ['From', '+15551234567'],
      ['To', '+15557654321'],
      ['Body', body],
      ['NumMedia', '0'],
      ['NumSegments', '1'],
    );
    if (names !== 'current') {
      pairs.push(['SmsSid', id], ['SmsMessageSid', id], ['SmsStatus', status]);
    }
    if (apiVersion) pairs.push(['ApiVersion', '2010-04-01']);
    return pairs;
  });

/** The callback URL's own query, as configured: none, or parameters of the operator's. */
const configuredQuery = fc.constantFrom('', '?app=orders', '?env=prod&x=1');

/** The message and (canonical) status the service would record from these fields, or null. */
function identity(pairs: Pairs): { id: string; status: string } | null {
  try {
    const event = normalizeCxmlCallback(formFields(pairs), {
      receivedAt: new Date(0),
      storeBody: false,
    });
    return { id: event.messageId, status: event.status };
  } catch {
    return null; // refused 400: a repeated id, no status, …
  }
}

/**
 * Whether `forged` would record what the genuine callback did not: another message, or a status
 * of the sender's choosing. A split whose last status value runs on into the genuine fields
 * after it (`deliveredNumMedia0…`) only makes the sender's own message `unknown`: that is no
 * name the sender chose, and no cut of where names sit can tell it from a genuine value.
 */
function forges(genuinePairs: Pairs, forged: Pairs): boolean {
  const was = identity(genuinePairs)!;
  const is = identity(forged);
  if (is === null) return false;
  return is.id !== was.id || (is.status !== was.status && is.status !== 'unknown');
}

/** The signed string cut at `cuts` (offsets, ascending) into name, value, name, value, …. */
function splitAt(signed: string, cuts: number[]): Pairs {
  const bounds = [0, ...cuts, signed.length];
  const pieces = bounds.slice(1).map((end, i) => signed.slice(bounds[i], end));
  if (pieces.length % 2 === 1) pieces.push(''); // the last name's value is empty
  const pairs: Pairs = [];
  for (let i = 0; i < pieces.length; i += 2) pairs.push([pieces[i]!, pieces[i + 1]!]);
  return pairs;
}

/** Offsets of every name a forger would cut at: each occurrence's start and end. */
function nameOffsets(signed: string): number[] {
  const offsets = new Set<number>();
  for (const name of ['MessageSid', 'MessageStatus', 'SmsSid', 'SmsStatus', 'Z', 'N', 'Body']) {
    for (let at = signed.indexOf(name); at !== -1; at = signed.indexOf(name, at + 1)) {
      offsets.add(at);
      offsets.add(at + name.length);
    }
  }
  return [...offsets];
}

/** Where the genuine callback's names and values meet in its signed string. */
function boundaries(pairs: Pairs): number[] {
  const sorted = [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const offsets: number[] = [];
  let at = 0;
  for (const [name, value] of sorted) {
    offsets.push(at, at + name.length);
    at += name.length + value.length;
  }
  return offsets.slice(1);
}

test('When a genuine callback’s text holds any of the names, then it is never taken for a re-split (as a POST and as a GET)', () => {
  fc.assert(
    fc.property(genuine, configuredQuery, fc.boolean(), (pairs, query, reversed) => {
      expect(signedFormMayBeResplit(PATH + query, pairs)).toBe(false);
      // A GET carries them in its query, in SignalWire's order (or another), after the URL's.
      const fields = new URLSearchParams(reversed ? [...pairs].reverse() : pairs).toString();
      const target = query === '' ? `${PATH}?${fields}` : `${PATH}${query}&${fields}`;
      expect(signedFormMayBeResplit(target, null)).toBe(false);
    }),
    { numRuns: 1000 },
  );
});

test('When a genuine signed string is split otherwise, verifies and names another message or status, then it is refused', () => {
  // The text holds pairs naming the victim; the forger's cuts, searched at random: the genuine
  // boundaries kept up to the text (its Body name kept or glued to the value before), then
  // where names start and end (some left out, a few cuts anywhere added), then the genuine
  // boundaries again from some point on (the rest absorbed by a value until there).
  const attack = fc.record({
    pairs: genuine,
    names: fc.subarray(['MessageSid', 'MessageStatus', 'SmsSid', 'SmsStatus', 'N', 'Z']),
    before: plainText,
    after: plainText,
  });
  const resplit = attack.chain(({ pairs, names, before, after }) => {
    const forgedText = names.map((n) => n + (n.endsWith('Sid') ? VICTIM : 'failed')).join('');
    const withText = pairs.map(([n, v]): [string, string] => [
      n,
      n === 'Body' ? before + forgedText + after : v,
    ]);
    const signed = signedFormParams(withText);
    const genuineCuts = boundaries(withText);
    const textAt = signed.indexOf(`Body${before + forgedText + after}`) + 4;
    const textEnd = textAt + (before + forgedText + after).length;
    const inText = nameOffsets(signed).filter((at) => at >= textAt && at <= textEnd);
    return fc.record({
      pairs: fc.constant(withText),
      glue: fc.boolean(),
      dropped: fc.oneof(
        { weight: 3, arbitrary: fc.constant<number[]>([]) },
        fc.subarray(inText, { maxLength: Math.min(2, inText.length) }),
      ),
      added: fc.oneof(
        { weight: 3, arbitrary: fc.constant<number[]>([]) },
        fc.array(fc.integer({ min: textAt, max: signed.length }), { maxLength: 2 }),
      ),
      // Where a genuine name starts (odd places in boundaries()), or past the end.
      resume: fc.nat(Math.floor(genuineCuts.length / 2)).map((k) => 2 * k + 1),
      textAt: fc.constant(textAt),
      textEnd: fc.constant(textEnd),
      inText: fc.constant(inText),
    });
  });
  let forgeries = 0;
  fc.assert(
    fc.property(
      resplit,
      configuredQuery,
      ({ pairs, glue, dropped, added, resume, textAt, textEnd, inText }, query) => {
        const signed = signedFormParams(pairs);
        const genuineCuts = boundaries(pairs);
        // Up to the text: the genuine boundaries (without Body's, glued).
        const head = genuineCuts.filter((at) => at < textAt - (glue ? 4 : 0));
        const cuts = inText.filter((at) => !dropped.includes(at));
        const tail = genuineCuts.slice(resume).filter((at) => at > textEnd);
        const allCuts = [...new Set([...head, textAt, ...cuts, ...added, ...tail])]
          .filter((at) => at > 0 && at < signed.length)
          .sort((a, b) => a - b);
        const forged = splitAt(signed, allCuts);
        // It verifies only if it sorts back to the very same string.
        if (signedFormParams(forged) !== signed) return;
        if (!forges(pairs, forged)) return;
        forgeries++;
        expect(signedFormMayBeResplit(PATH + query, forged)).toBe(true);
      },
    ),
    { numRuns: 3000 },
  );
  // The search did meet forgeries that would have worked (about 25 in a run).
  expect(forgeries).toBeGreaterThan(3);
});

test('When a genuine callback’s text holds forged pairs for another message, then every split that verifies and names it is refused', () => {
  // The attack as a forger builds it: the text is `<before>` then sorted pairs naming the
  // victim, then a name that takes the rest; the genuine pairs after it absorbed, or some
  // kept as their own names.
  const forgedNames = fc.subarray(['MessageSid', 'MessageStatus', 'SmsSid', 'SmsStatus'], {
    minLength: 1,
  });
  let forgeries = 0;
  fc.assert(
    fc.property(
      genuine,
      forgedNames,
      fc.constantFrom('Z', 'N', 'Nz', 'Sms', 'T', ''),
      text,
      fc.boolean(),
      (genuinePairs, names, tailName, before, glueBody) => {
        const forgedPairs = names.map((name): [string, string] => [
          name,
          name.endsWith('Sid') ? VICTIM : 'failed',
        ]);
        const forgedText = forgedPairs.map(([n, v]) => n + v).join('') + tailName;
        const pairs = genuinePairs.map(([n, v]): [string, string] => [
          n,
          n === 'Body' ? before + forgedText : v,
        ]);
        const signed = signedFormParams(pairs);
        const sorted = [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        const bodyAt = sorted.findIndex(([n]) => n === 'Body');
        const head: Pairs = sorted.slice(0, bodyAt).map(([n, v]) => [n, v]);
        // The Body name kept, or glued to the value before it.
        if (glueBody && head.length > 0) head[head.length - 1]![1] += `Body${before}`;
        else head.push(['Body', before]);
        const rest = sorted
          .slice(bodyAt + 1)
          .map(([n, v]) => n + v)
          .join('');
        const forged: Pairs = [...head, ...forgedPairs];
        if (tailName === '') forgedPairs[forgedPairs.length - 1]![1] += rest;
        else forged.push([tailName, rest]);
        if (signedFormParams(forged) !== signed) return;
        if (!forges(pairs, forged)) return;
        forgeries++;
        expect(signedFormMayBeResplit(PATH, forged)).toBe(true);
      },
    ),
    { numRuns: 2000 },
  );
  // Most of these are forgeries that would have worked.
  expect(forgeries).toBeGreaterThan(100);
});

test('When a genuine form callback to a URL with a query is replayed as a GET of that URL followed by its signed parameters, then a GET that names another message or status is refused', () => {
  fc.assert(
    fc.property(
      genuine,
      fc.constantFrom('?app=orders', '?', '?app=orders&'),
      fc.constantFrom('MessageSid', 'SmsSid'),
      text,
      (genuinePairs, query, idName, after) => {
        const pairs = genuinePairs.map(([n, v]): [string, string] => [
          n,
          n === 'Body' ? `&${idName}=${VICTIM}&MessageStatus=failed&SmsStatus=failed${after}` : v,
        ]);
        const target = PATH + query + signedFormParams(pairs);
        const fields: Pairs = [...new URLSearchParams(target.slice(target.indexOf('?') + 1))];
        if (!forges(pairs, fields)) return;
        expect(signedFormMayBeResplit(target, null)).toBe(true);
      },
    ),
    { numRuns: 1000 },
  );
});
