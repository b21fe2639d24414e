import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { sha256Hex, signFormParams, signJsonBody, signSha256 } from '../signalwire/signing';
import type { FormParams } from '../signalwire/signing';

export type SignatureFailure = 'missing' | 'mismatch' | 'sha256_mismatch' | 'body_hash_mismatch';

export type SignatureResult =
  | { ok: true; scheme: 'A' | 'B' | 'B+bodySHA256' | 'SHA256'; url: string }
  | { ok: false; reason: SignatureFailure; candidateUrls: string[] };

export interface SignedRequest {
  headers: IncomingHttpHeaders;
  /** The request's original path and query, exactly as received (`req.originalUrl`). */
  originalUrl: string;
  rawBody: Buffer;
  /** Form parameters of an urlencoded body, in order; empty for JSON and GET. */
  formParams: FormParams;
}

/**
 * Verifies SignalWire's signatures (SIGNALWIRE.md "Signing") against every signing key, for
 * the URL as SignalWire called it: PUBLIC_BASE_URL + the original path and query, with and
 * without the default port. The Host header is never trusted to rebuild it.
 */
export function verifySignature(
  keys: readonly string[],
  publicBaseUrl: string,
  request: SignedRequest,
): SignatureResult {
  const candidateUrls = candidateUrlsFor(publicBaseUrl, request.originalUrl);
  const sha1 =
    header(request.headers, 'x-signalwire-signature') ??
    header(request.headers, 'x-twilio-signature');
  const sha256 = header(request.headers, 'x-signalwire-sha256-signature');
  if (!sha1 && !sha256) return { ok: false, reason: 'missing', candidateUrls };

  // The SHA-256 header, when present, must verify as well: it covers the raw body.
  let sha256Url: string | undefined;
  if (sha256) {
    sha256Url = candidateUrls.find((url) =>
      keys.some((key) => safeEqual(signSha256(key, url, request.rawBody), sha256.toLowerCase())),
    );
    if (!sha256Url) return { ok: false, reason: 'sha256_mismatch', candidateUrls };
    if (!sha1) return { ok: true, scheme: 'SHA256', url: sha256Url };
  }

  // The query is the same in every candidate URL: read it once, and only when it is there.
  const bodyHash = request.originalUrl.includes('bodySHA256')
    ? new URL(candidateUrls[0]!).searchParams.get('bodySHA256')
    : null;
  for (const url of candidateUrls) {
    for (const key of keys) {
      if (bodyHash !== null) {
        // Twilio-style JSON signing: the signature covers the URL only, the body its hash.
        if (safeEqual(signFormParams(key, url, []), sha1!)) {
          return safeEqual(sha256Hex(request.rawBody), bodyHash.toLowerCase())
            ? { ok: true, scheme: 'B+bodySHA256', url }
            : { ok: false, reason: 'body_hash_mismatch', candidateUrls };
        }
        continue;
      }
      if (safeEqual(signFormParams(key, url, request.formParams), sha1!)) {
        return { ok: true, scheme: 'B', url };
      }
      if (safeEqual(signJsonBody(key, url, request.rawBody), sha1!.toLowerCase())) {
        return { ok: true, scheme: 'A', url };
      }
    }
  }
  return { ok: false, reason: 'mismatch', candidateUrls };
}

/** The URL as called, plus the same URL with the default port added or removed. */
export function candidateUrlsFor(publicBaseUrl: string, originalUrl: string): string[] {
  return candidatePrefixes(publicBaseUrl).map((prefix) => `${prefix}${originalUrl}`);
}

// PUBLIC_BASE_URL is fixed for the life of the process: parse it once, not per callback.
const prefixesByBaseUrl = new Map<string, string[]>();

function candidatePrefixes(publicBaseUrl: string): string[] {
  let prefixes = prefixesByBaseUrl.get(publicBaseUrl);
  if (prefixes) return prefixes;
  const base = new URL(publicBaseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  const defaultPort = base.protocol === 'https:' ? '443' : '80';
  const origin = `${base.protocol}//${base.hostname.includes(':') ? `[${base.hostname}]` : base.hostname}`;
  const port = base.port; // '' when the URL used the default port
  prefixes =
    port === ''
      ? [`${origin}${basePath}`, `${origin}:${defaultPort}${basePath}`]
      : [`${origin}:${port}${basePath}`];
  if (port === defaultPort) prefixes.push(`${origin}${basePath}`);
  prefixesByBaseUrl.set(publicBaseUrl, prefixes);
  return prefixes;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first && first.length > 0 ? first : undefined;
}

/** Constant-time comparison; only a length difference (not secret) returns early. */
function safeEqual(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
