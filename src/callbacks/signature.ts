import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import {
  sha256Hex,
  signFormString,
  signJsonBody,
  signSha256,
  signedFormParams,
} from '../signalwire/signing';
import type { FormParams } from '../signalwire/signing';

/**
 * Why a callback's signature does not authenticate it. `ambiguous_parameters` is never
 * verifySignature's: a form signature that verified, for fields it would also verify cut
 * otherwise (form-resplit.ts); the routes refuse it with the other failures.
 */
export const SIGNATURE_FAILURES = [
  'missing',
  'mismatch',
  'sha256_mismatch',
  'body_hash_mismatch',
  'ambiguous_parameters',
] as const;
export type SignatureFailure = (typeof SIGNATURE_FAILURES)[number];

export type SignatureResult =
  | {
      ok: true;
      scheme: 'A' | 'B' | 'B+bodySHA256' | 'SHA256';
      url: string;
      /** Which of the configured keys verified (its index): the relay re-signs with it. */
      keyIndex: number;
    }
  | { ok: false; reason: SignatureFailure; candidateUrls: string[] };

export interface SignedRequest {
  headers: IncomingHttpHeaders;
  /**
   * The request's original path and query, exactly as received (`req.originalUrl`, a target in
   * absolute form without its scheme and authority: originForm).
   */
  originalUrl: string;
  /**
   * What the body is: `form` for an urlencoded body and for a GET (whose parameters are in
   * the URL), `json` for a JSON body. It decides the one scheme that may verify.
   */
  body: 'form' | 'json';
  rawBody: Buffer;
  /** Form parameters of an urlencoded body, in order; empty for JSON and GET. */
  formParams: FormParams;
}

/**
 * Verifies SignalWire's signatures (SIGNALWIRE.md "Signing") against every signing key, for
 * the URL as SignalWire called it: PUBLIC_BASE_URL + the original path and query, with and
 * without the default port. The Host header is never trusted to rebuild it.
 *
 * The scheme follows the body (DESIGN §2): a form (or GET) verifies only with scheme B over
 * the URL and its sorted parameters; a JSON body only with scheme A over the URL and the raw
 * body, or with scheme B over the URL alone when the URL carries a `bodySHA256` that matches
 * the body. Both schemes are HMAC-SHA1 with the same key, so trying one on the other's body
 * would let a genuine signature of one request authenticate a forged one: a base64 form
 * signature re-encoded as hex verifies scheme A over a raw body equal to the signed string.
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

  // No scheme separates the URL from what is signed after it, so a JSON body's signature
  // (url + body) is also one over a URL that goes on with that body: a GET to url + body, or
  // a JSON body bound by a bodySHA256 its sender wrote into the signed body (a message's text)
  // — a forged status for any message id. Such a request target holds the body's opening `{`,
  // which no URL SignalWire calls holds: the callback URL has none, and what SignalWire adds
  // (a GET's parameters) it percent-encodes.
  if (request.originalUrl.includes('{')) return { ok: false, reason: 'mismatch', candidateUrls };

  // The SHA-256 header, when present, must verify as well: it covers the raw body. Alone it
  // authenticates a JSON body only (it exists for JSON webhooks).
  if (sha256) {
    const given = sha256.toLowerCase();
    const match = firstMatch(keys, candidateUrls, (key, url) =>
      safeEqual(signSha256(key, url, request.rawBody), given),
    );
    if (!match) return { ok: false, reason: 'sha256_mismatch', candidateUrls };
    if (!sha1) {
      return request.body === 'json'
        ? { ok: true, scheme: 'SHA256', ...match }
        : { ok: false, reason: 'mismatch', candidateUrls };
    }
  }

  if (request.body === 'form') {
    // Scheme B over the URL and the sorted parameters (a GET has them in the URL). They are
    // the same for every candidate URL and key: sorted and joined once, not once per try.
    const signedParams = signedFormParams(request.formParams);
    const match = firstMatch(keys, candidateUrls, (key, url) =>
      safeEqual(signFormString(key, url, signedParams), sha1!),
    );
    return match
      ? { ok: true, scheme: 'B', ...match }
      : { ok: false, reason: 'mismatch', candidateUrls };
  }

  // JSON: scheme A over the URL and the raw body.
  const hex = sha1!.toLowerCase();
  const matchA = firstMatch(keys, candidateUrls, (key, url) =>
    safeEqual(signJsonBody(key, url, request.rawBody), hex),
  );
  if (matchA) return { ok: true, scheme: 'A', ...matchA };
  // Or Twilio-style: scheme B over the URL alone, the body bound by the URL's bodySHA256.
  // The query is the same in every candidate URL: read it once, and only when it is there.
  const bodyHash = request.originalUrl.includes('bodySHA256')
    ? new URL(candidateUrls[0]!).searchParams.get('bodySHA256')
    : null;
  if (bodyHash !== null) {
    const matchB = firstMatch(keys, candidateUrls, (key, url) =>
      safeEqual(signFormString(key, url, ''), sha1!),
    );
    if (matchB) {
      return safeEqual(sha256Hex(request.rawBody), bodyHash.toLowerCase())
        ? { ok: true, scheme: 'B+bodySHA256', ...matchB }
        : { ok: false, reason: 'body_hash_mismatch', candidateUrls };
    }
  }
  return { ok: false, reason: 'mismatch', candidateUrls };
}

/** The first candidate URL and key (by index) for which `verifies` holds. */
function firstMatch(
  keys: readonly string[],
  candidateUrls: readonly string[],
  verifies: (key: string, url: string) => boolean,
): { url: string; keyIndex: number } | null {
  for (const url of candidateUrls) {
    for (let keyIndex = 0; keyIndex < keys.length; keyIndex++) {
      if (verifies(keys[keyIndex]!, url)) return { url, keyIndex };
    }
  }
  return null;
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
  // An IPv6 host keeps its brackets in `hostname` (WHATWG URL): `http://[2001:db8::1]`.
  const origin = `${base.protocol}//${base.hostname}`;
  const port = base.port; // '' when the URL used the default port
  // A port that is not the default is also tried without it, as the official SDK's
  // validateRequest does (it removes any port: "signature generation on the back end is
  // inconsistent"); the signature still needs the signing key, whichever URL it covers.
  prefixes =
    port === ''
      ? [`${origin}${basePath}`, `${origin}:${defaultPort}${basePath}`]
      : [`${origin}:${port}${basePath}`, `${origin}${basePath}`];
  // URL parsing lower-cases the host (and punycodes it); SignalWire signs the URL it was given,
  // and the proxy gives it PUBLIC_BASE_URL as written: that spelling verifies too, with and
  // without its port like the canonical one (SignalWire may add or drop it).
  for (const written of writtenSpellings(publicBaseUrl, port === '' ? defaultPort : null)) {
    if (!prefixes.includes(written)) prefixes.push(written);
  }
  prefixesByBaseUrl.set(publicBaseUrl, prefixes);
  return prefixes;
}

/**
 * PUBLIC_BASE_URL as written (trailing slashes cut, as the proxy writes it) and the same without
 * its port; when it names the default port or none (`defaultPort` given), also with that port.
 */
function writtenSpellings(publicBaseUrl: string, defaultPort: string | null): string[] {
  const written = publicBaseUrl.replace(/\/+$/, '');
  const pathAt = written.indexOf('/', written.indexOf('//') + 2);
  const origin = pathAt === -1 ? written : written.slice(0, pathAt);
  const path = pathAt === -1 ? '' : written.slice(pathAt);
  // The port as written (`:443`, or `:0443`, which also names it); an IPv6 host ends in `]`.
  const host = origin.replace(/:\d*$/, '');
  if (defaultPort === null) return [written, `${host}${path}`];
  return [written, `${host}${path}`, `${host}:${defaultPort}${path}`];
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
