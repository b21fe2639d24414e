/**
 * RFC 9112 §3.2.2: a request target may come in absolute form (`POST http://host/path`), which a
 * server must accept; a proxy in front may forward one so (HAProxy does, for a client that sent
 * it so, and in some versions for every HTTP/2 client). Node keeps it whole in `req.url`, and
 * Express routes it by its path but keeps it whole in `originalUrl`.
 */
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * The target's path and query: an absolute form's scheme and authority cut off (its empty path
 * is `/`), any other target as it came. The authority an absolute form names is the sender's
 * word, like Host: nothing is built from it.
 */
export function originForm(target: string): string {
  // The usual target, first: no regular expression for every callback.
  if (target.startsWith('/')) return target;
  const absolute = ABSOLUTE_FORM.exec(target);
  if (absolute === null) return target;
  const rest = target.slice(absolute[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}
