import fc from 'fast-check';
import { basicAuthHeader, parseBasicAuth } from '../../src/signalwire/basic-auth';

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

describe('parseBasicAuth', () => {
  test('When any username and password are encoded as clients do, then they are read back (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }).filter((u) => !u.includes(':')),
        fc.string({ unit: 'grapheme', maxLength: 60 }),
        (username, password) => {
          expect(parseBasicAuth(basicAuthHeader(username, password))).toEqual({
            username,
            password,
          });
        },
      ),
    );
  });

  test('When the padding is left out, then the header still reads', () => {
    expect(parseBasicAuth(`Basic ${b64('project:tok').replace(/=+$/, '')}`)).toEqual({
      username: 'project',
      password: 'tok',
    });
  });

  test.each([
    // Node's decoder stops at the `=`: it would read "allowed:x", another decoder the rest too.
    ['an = inside', `Basic ${b64('allowed:x')}=${b64('other:token')}`],
    ['URL-safe letters', `Basic ${b64('p:\u00fb\u00ff').replace(/\+/g, '-').replace(/\//g, '_')}`],
    ['bits that do not decode to themselves', 'Basic cDp0b2s='.replace('s=', 't=')],
    [
      'bytes that are not UTF-8',
      `Basic ${Buffer.from([0x70, 0x3a, 0xff, 0xfe]).toString('base64')}`,
    ],
    ['no colon', `Basic ${b64('project')}`],
    ['another scheme', `Bearer ${b64('p:t')}`],
  ])('When the header has %s, then it is not read as credentials', (_what, header) => {
    expect(parseBasicAuth(header)).toBeNull();
  });
});
