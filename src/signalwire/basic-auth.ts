/**
 * HTTP Basic credentials as SignalWire uses them: username = project id, password = API token.
 * Shared by the simulator (which checks them) and the proxy (which passes them through and
 * needs the project id for its allow-list).
 */
export interface BasicCredentials {
  username: string;
  password: string;
}

/** Parses an `Authorization: Basic …` header; null when absent or not Basic. */
export function parseBasicAuth(header: string | undefined): BasicCredentials | null {
  if (!header) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!match?.[1]) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  // Only the first colon separates: API tokens may contain colons, project ids never do.
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function basicAuthHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}
