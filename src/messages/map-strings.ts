/**
 * A JSON-like value with `change` applied to every string in it, keys included, at any depth:
 * for payloads kept as received (a callback's fields, a lookup's answer) that must lose
 * something wherever it is. Keys are defined, not assigned, so a key such as `__proto__`
 * stays a plain key of the copy.
 */
export function mapStrings(value: unknown, change: (text: string) => string): unknown {
  if (typeof value === 'string') return change(value);
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, change));
  if (typeof value !== 'object' || value === null) return value;
  const copy: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    Object.defineProperty(copy, change(key), {
      value: mapStrings(inner, change),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return copy;
}

/**
 * The value without NUL characters, in keys and strings at any depth. JSON and forms can hold
 * one (`\u0000`, `%00`); PostgreSQL can store it neither in text nor in jsonb, so a payload
 * kept as received must lose it to be stored at all.
 */
export function withoutNul(value: unknown): unknown {
  return mapStrings(value, (text) => (text.includes('\0') ? text.replaceAll('\0', '') : text));
}

/** Whether a key (or with `keysOnly` false, a string too), however deeply nested, holds NUL. */
export function holdsNul(value: unknown, keysOnly = false): boolean {
  if (typeof value === 'string') return !keysOnly && value.includes('\0');
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some((item) => holdsNul(item, keysOnly));
  for (const key in value) {
    if (key.includes('\0') || holdsNul((value as Record<string, unknown>)[key], keysOnly)) {
      return true;
    }
  }
  return false;
}
