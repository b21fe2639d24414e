/**
 * The one change the proxy makes to SignalWire's answer (DESIGN §5): where it echoes the
 * status-callback URL the proxy injected (the native `status_callback_url`), the caller sees
 * its own callback URL, or null when it gave none. The token in the injected URL
 * authenticates callbacks: it never leaves the service, neither to the caller nor into the
 * stored answer. Every other byte stays as SignalWire sent it.
 */
export function withClientCallback(
  answer: Buffer,
  token: string,
  clientCallback: string | null,
): Buffer {
  // Tokens are base64url with dots: they appear literally in any JSON text that holds them.
  if (!answer.includes(token)) return answer;
  const replacement = JSON.stringify(clientCallback);
  // Every JSON string literal that holds the token becomes the caller's URL (or null). A
  // left-to-right scan of valid JSON meets string literals exactly, keys included.
  let text = answer
    .toString('utf8')
    .replace(JSON_STRING, (literal) => (literal.includes(token) ? replacement : literal));
  // An answer that is not JSON (none is expected) still never carries the token out.
  if (text.includes(token)) text = text.split(token).join('[token]');
  return Buffer.from(text, 'utf8');
}

const JSON_STRING = /"(?:[^"\\]|\\.)*"/g;
