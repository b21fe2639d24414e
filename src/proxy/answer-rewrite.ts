import { verifyCallbackToken } from '../callbacks/callback-token';

/**
 * The one change the proxy makes to SignalWire's answer (DESIGN §5): where it echoes the
 * status-callback URL the proxy injected (the native `status_callback_url`), the caller sees
 * its own callback URL, or null when it gave none. The token in the injected URL
 * authenticates callbacks: it never leaves the service, neither to the caller nor into the
 * stored answer. Text that only mentions the injected URL (an error message) keeps its words,
 * with the token hidden. Every other byte stays as SignalWire sent it.
 */
export function withClientCallback(
  answer: Buffer,
  token: string,
  clientCallback: string | null,
): Buffer {
  // Tokens are base64url with dots: they appear literally in any JSON text that holds them.
  if (!answer.includes(token)) return answer;
  const replacement = JSON.stringify(clientCallback);
  // Every JSON string literal that is the injected URL becomes the caller's URL (or null). A
  // left-to-right scan of valid JSON meets string literals exactly, keys included. A literal
  // that only mentions it, such as an error message naming the URL SignalWire refused, keeps
  // its words: the caller's URL is not what it speaks of, and only the token is hidden.
  let text = answer
    .toString('utf8')
    .replace(JSON_STRING, (literal) =>
      !literal.includes(token) ? literal : isProse(literal) ? masked(literal, token) : replacement,
    );
  // An answer that is not JSON (none is expected) still never carries the token out.
  if (text.includes(token)) text = text.split(token).join('[token]');
  return Buffer.from(text, 'utf8');
}

const JSON_STRING = /"(?:[^"\\]|\\.)*"/g;

/** Text with white space in it is words about a URL, never a URL itself. */
function isProse(literal: string): boolean {
  let value: unknown;
  try {
    value = JSON.parse(literal);
  } catch {
    value = literal;
  }
  return typeof value === 'string' && /\s/.test(value);
}

function masked(literal: string, token: string): string {
  return literal.split(token).join('[token]');
}

/**
 * The callback tokens of this service in an answer, by ref: every token one of `secrets`
 * signed in a callback URL SignalWire echoes back, however that URL is spelled — another host
 * or port, `/` as `\/`, `\u002f` or `%2F` (a token's own characters need no escaping). Another
 * service's tokens are not ours to hide.
 */
export function injectedTokens(answer: Buffer, secrets: readonly string[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const [, token] of answer.toString('utf8').matchAll(CALLBACK_TOKEN)) {
    const verified = verifyCallbackToken(secrets, token!);
    if (verified) found.set(token!, verified.ref);
  }
  return found;
}

// `callbacks/{api}/{token}`, each `/` in any of its spellings; the token's shape as
// src/callbacks/callback-token.ts makes it, legacy or current.
const SLASH = String.raw`(?:/|\\/|\\u002f|%2f)`;
const CALLBACK_TOKEN = new RegExp(
  String.raw`callbacks${SLASH}(?:cxml|native)${SLASH}` +
    String.raw`([A-Za-z0-9_-]{16}\.(?:[0-9a-z]{1,10}\.)?[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])`,
  'gi',
);
