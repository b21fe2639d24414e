import { tokenProblem } from '../../src/page/client/view-model';

/**
 * The token form's check (main.ts): a token that no API token can be (config.ts refuses such
 * API_TOKENS) is refused before anything is sent, saying which character is wrong.
 */

test('When a token holds a character no API token may hold, then the form says which; a token the service could accept passes', () => {
  expect(tokenProblem('dev-token')).toBeNull();
  expect(tokenProblem('abc~._+/=!#$%&*0123456789')).toBeNull();
  // Latin-1 letters: a header carries them (one byte each), and config.ts accepts them.
  expect(tokenProblem('pässwörd-token-1234')).toBeNull();
  expect(tokenProblem('test\u2013api\u2013token')).toMatch(/U\+2013/);
  expect(tokenProblem('test\u200bapi-token')).toMatch(/U\+200B/);
  expect(tokenProblem('test api-token')).toMatch(/U\+0020/);
  expect(tokenProblem('test\tapi-token')).toMatch(/U\+0009/);
  expect(tokenProblem('test\u00a0api-token')).toMatch(/U\+00A0/);
  expect(tokenProblem('emoji-\u{1F600}')).toMatch(/U\+1F600/);
});
