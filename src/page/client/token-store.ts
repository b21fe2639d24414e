/** The API token, kept for this tab's session only (sessionStorage: gone when the tab closes). */
const KEY = 'sw-status.api-token';

export function readToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    // Storage disabled: the token is asked for on every load.
    return null;
  }
}

export function saveToken(token: string): void {
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    // Storage disabled: it lives in memory for this load only.
  }
}

export function forgetToken(): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // Nothing kept.
  }
}
