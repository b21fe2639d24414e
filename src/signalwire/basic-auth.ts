/**
 * HTTP Basic credentials as SignalWire uses them: username = project id, password = API token.
 * Shared by the simulator (which checks them) and the proxy (which passes them through and
 * needs the project id for its allow-list).
 */
export interface BasicCredentials {
  username: string;
  password: string;
}

/**
 * Parses an `Authorization: Basic …` header; null when absent, not Basic, or not written the
 * one way every client writes it: standard base64 (RFC 4648 §4, padding optional) of UTF-8
 * text. Node's decoder is lenient — it stops at an `=` in the middle and takes URL-safe
 * letters — and the header goes on to SignalWire, whose decoder may read the same bytes
 * differently: the project the allow-list (SIGNALWIRE_PROJECT_IDS) checks must be the one
 * SignalWire authenticates, so only a spelling with one reading is accepted.
 */
export function parseBasicAuth(header: string | undefined): BasicCredentials | null {
  if (!header) return null;
  const match = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header);
  if (!match?.[1]) return null;
  const encoded = match[1];
  const bytes = Buffer.from(encoded, 'base64');
  if (bytes.toString('base64').replace(/=+$/, '') !== encoded.replace(/=+$/, '')) return null;
  const decoded = bytes.toString('utf8');
  if (!Buffer.from(decoded, 'utf8').equals(bytes)) return null;
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  // Only the first colon separates: API tokens may contain colons, project ids never do.
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function basicAuthHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}
