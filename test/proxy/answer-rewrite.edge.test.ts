import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { injectedTokens, withClientCallback } from '../../src/proxy/answer-rewrite';

/**
 * The one change to SignalWire's answer (DESIGN §5): where it echoes the injected callback URL
 * the caller sees its own (or null). Text that merely mentions that URL — an error message —
 * keeps its words: only the token in it is hidden.
 */

const TOKEN = 'dG9rZW4.c2lnbmF0dXJl_-x';
const INJECTED = `https://hooks.example.com/callbacks/native/${TOKEN}`;
const CLIENT = 'https://app.example.com/sms/status';

const rewrite = (answer: unknown, client: string | null = CLIENT): unknown =>
  JSON.parse(
    withClientCallback(Buffer.from(JSON.stringify(answer)), TOKEN, client).toString('utf8'),
  );

test('When the answer echoes the injected URL, then the caller sees its own URL, or null when it gave none', () => {
  const answer = { id: 'a1', status_callback_url: INJECTED };
  expect(rewrite(answer)).toEqual({ id: 'a1', status_callback_url: CLIENT });
  expect(rewrite(answer, null)).toEqual({ id: 'a1', status_callback_url: null });
});

test('When the echo is written with escaped slashes, then it is still the caller’s URL', () => {
  const text = JSON.stringify({ status_callback_url: INJECTED }).replace(/\//g, '\\/');
  const out = withClientCallback(Buffer.from(text), TOKEN, CLIENT).toString('utf8');
  expect(JSON.parse(out)).toEqual({ status_callback_url: CLIENT });
});

test('When an error message mentions the injected URL, then the message keeps its words and only the token is hidden', () => {
  const answer = {
    code: 21609,
    message: `The StatusCallback URL ${INJECTED} is not a valid URL.`,
    more_info: 'https://developer.signalwire.com/rest/compatibility-api/overview/error-codes#21609',
    status: 400,
  };
  for (const client of [CLIENT, null]) {
    const out = rewrite(answer, client) as typeof answer;
    expect(out.message).toBe(
      'The StatusCallback URL https://hooks.example.com/callbacks/native/[token] is not a valid URL.',
    );
    expect(out).toMatchObject({ code: 21609, status: 400 });
  }
});

test('When the answer does not hold the token, then its bytes are unchanged', () => {
  const bytes = Buffer.from('{"id":"a1",  "status_callback_url":null}');
  expect(withClientCallback(bytes, TOKEN, CLIENT)).toBe(bytes);
});

describe('injectedTokens', () => {
  const secrets = ['first-secret', 'older-secret'];
  const ours = mintCallbackToken(secrets);
  const older = mintCallbackToken(['older-secret']);
  const theirs = mintCallbackToken(['another-service']);
  const found = (text: string) => injectedTokens(Buffer.from(text), secrets);

  test('When an answer echoes a URL with a token one of the secrets signed, then it is found with its ref, however the URL is spelled', () => {
    expect(
      found(
        JSON.stringify({
          status_callback_url: `https://HOOKS.example.com:443/base/callbacks/native/${ours.token}`,
          note: `see https://hooks.example.com/callbacks/cxml/${older.token}.`,
        }).replace(/\//g, '\\/'),
      ),
    ).toEqual(
      new Map([
        [ours.token, ours.ref],
        [older.token, older.ref],
      ]),
    );
  });

  test.each([
    ['escaped as \\u002f', (url: string) => JSON.stringify({ u: url }).replace(/\//g, '\\u002f')],
    ['percent-encoded', (url: string) => JSON.stringify({ u: encodeURIComponent(url) })],
  ])('When the URL is %s, then its token is found and hidden', (_how, spell) => {
    const text = spell(`https://hooks.example.com/callbacks/native/${ours.token}`);
    expect(found(text)).toEqual(new Map([[ours.token, ours.ref]]));
    const hidden = withClientCallback(Buffer.from(text), ours.token, null).toString('utf8');
    expect(hidden).not.toContain(ours.token);
  });

  test('When a token is another service’s, or not a whole token, then it is not ours to hide', () => {
    expect(found(`{"u":"https://x/callbacks/native/${theirs.token}"}`).size).toBe(0);
    expect(found(`{"u":"https://x/callbacks/native/${ours.token}x"}`).size).toBe(0);
    expect(found(`{"u":"https://x/callbacks/native/${ours.token.slice(1)}"}`).size).toBe(0);
  });
});
