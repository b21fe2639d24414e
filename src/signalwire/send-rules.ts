/**
 * The seeds' validation rules for creating a message, in both SignalWire API flavours, and the
 * error bodies each flavour answers with. Pure functions, shared by the simulator and the send
 * proxy so that what the proxy refuses locally and what the (simulated) provider refuses can
 * never drift apart.
 *
 * Compatibility (cXML/LaML) answers the first problem found, as one
 * `{ code, message, more_info, status }` body with HTTP 400 (seed 002). Native
 * (`/api/messaging/messages`) answers every problem at once as
 * `422 { errors: [{ type, code, message, attribute, url }] }` (seeds 001, 003).
 */

/** Compatibility error codes. Twilio's numbers wherever Twilio has one for the same fault
 * (SignalWire's compatibility API is Twilio-compatible and documents 21602/21603/21604/21617/
 * 21620/21623 with the same meaning), SignalWire's own where only SignalWire has one. */
export const COMPAT_CODES = {
  /** SignalWire generic "the argument passed is invalid": malformed body, bad SendAsMms. */
  invalidArgument: 10000,
  /** Twilio/SignalWire: authentication failed (bad or missing credentials, foreign AccountSid). */
  authentication: 20003,
  /** Twilio "Access Denied": authenticated but not allowed (the proxy's project allow-list). */
  accessDenied: 20006,
  /** Twilio: resource not found. */
  notFound: 20404,
  /** Twilio "Internal Server Error": a fault of the service answering (here: the proxy). */
  internalError: 20500,
  /** Twilio "Service Unavailable": the proxy could not reach SignalWire, or it did not answer
   * within SIGNALWIRE_TIMEOUT_MS (HTTP 502 and 504 respectively). */
  serviceUnavailable: 20503,
  /** Twilio "Invalid 'To' Phone Number". */
  invalidTo: 21211,
  /** Twilio "Invalid 'From' Phone Number" (SignalWire: "not in the correct format"). */
  invalidFrom: 21212,
  /** SignalWire cXML: "The provided ApplicationSid is invalid". */
  invalidApplicationSid: 21218,
  /** "Message body is required": Body was sent but empty and there is no media. */
  bodyRequired: 21602,
  /** "A 'From' or 'MessagingServiceSid' parameter is required". */
  fromRequired: 21603,
  /** "The destination 'To' phone number is required". */
  toRequired: 21604,
  /** Twilio "Invalid 'StatusCallback'". */
  invalidStatusCallback: 21609,
  /** "The concatenated message body exceeds the 1600 character limit". */
  bodyTooLong: 21617,
  /** Twilio "A Message Body or Media URL is required": neither parameter was sent at all. */
  bodyOrMediaRequired: 21619,
  /** "Invalid media URL(s)". */
  invalidMediaUrl: 21620,
  /** "Number of media files exceeds allowed limit". */
  tooManyMedia: 21623,
  /** Twilio "Invalid validity period value". */
  invalidValidityPeriod: 21624,
  /** Twilio "Max Price must be a valid float". */
  invalidMaxPrice: 21627,
  /** Twilio "The Messaging Service is invalid". */
  invalidMessagingServiceSid: 21705,
} as const;

export const COMPAT_MORE_INFO_BASE =
  'https://developer.signalwire.com/rest/compatibility-api/overview/error-codes';
export const NATIVE_ERROR_URL_BASE = 'https://developer.signalwire.com/rest/overview/error-codes/';

export const MAX_MEDIA = 8;
export const MAX_BODY_CHARS = 1600;
export const VALIDITY_PERIOD_MIN = 1;
export const VALIDITY_PERIOD_MAX = 172_800;
export const DEFAULT_VALIDITY_PERIOD = 14_400;
export const MAX_CUSTOM_VARIABLES = 20;
export const MAX_CUSTOM_VARIABLE_BYTES = 1024;

/** `+` and 5–17 digits. */
export const E164 = /^\+\d{5,17}$/;
/** A 5–6 digit short code, allowed as a sender. */
export const SHORTCODE = /^\d{5,6}$/;
/**
 * Native `to` also takes passthrough service numbers "like 988/+988". Which ones exist is the
 * carrier's business, so any 3-digit number passes here and the provider decides: refusing a
 * send the provider would accept is worse than forwarding one it refuses.
 */
export const PASSTHROUGH = /^\+?\d{3}$/;
export const MAX_PRICE = /^\d+\.?\d{0,4}$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const CUSTOM_VARIABLE_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const RESERVED_CUSTOM_VARIABLE_PREFIXES = ['signalwire_', 'sw_', 'rtc_', 'internal_'];

// ---------------------------------------------------------------------------------------------
// Error bodies

export interface CompatErrorBody {
  code: number;
  message: string;
  more_info: string;
  status: number;
}

export interface NativeErrorItem {
  type: string;
  code: string;
  message: string;
  /** The request field at fault; null when the fault is not one field's (auth, upstream). */
  attribute: string | null;
  url: string;
}

export interface NativeErrorBody {
  errors: NativeErrorItem[];
}

/** An HTTP status and the body to answer it with. */
export interface ApiFailure<E> {
  status: number;
  error: E;
}

export type ParseResult<T, E> = { ok: true; value: T } | ({ ok: false } & ApiFailure<E>);

/** A compatibility-shaped error, for validation and for 401/403/502/504 alike. */
export function compatError(
  status: number,
  code: number,
  message: string,
): ApiFailure<CompatErrorBody> {
  return {
    status,
    error: { code, message, more_info: `${COMPAT_MORE_INFO_BASE}#${code}`, status },
  };
}

export function nativeErrorItem(
  type: string,
  code: string,
  message: string,
  attribute: string | null = null,
): NativeErrorItem {
  return { type, code, message, attribute, url: `${NATIVE_ERROR_URL_BASE}#${code}` };
}

/** A native-shaped error with one entry, e.g. `nativeError(401, 'authentication_error', 'unauthorized', …)`. */
export function nativeError(
  status: number,
  type: string,
  code: string,
  message: string,
  attribute: string | null = null,
): ApiFailure<NativeErrorBody> {
  return { status, error: { errors: [nativeErrorItem(type, code, message, attribute)] } };
}

// ---------------------------------------------------------------------------------------------
// Shared predicates

export function isE164(value: string): boolean {
  return E164.test(value);
}

export function isSender(value: string): boolean {
  return E164.test(value) || SHORTCODE.test(value);
}

/** http(s) URLs only: the provider fetches media and posts callbacks over HTTP. */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

/** Longest status-callback URL accepted: far above any real one, far below what abuses it. */
export const MAX_CALLBACK_URL_LENGTH = 2048;

/**
 * Why a status-callback URL cannot be used, or null when it can. The service relays the
 * caller's callbacks to this URL itself (DESIGN §10), signed for the URL as given, so it must
 * be one an HTTP client calls exactly as written: absolute http(s) with a host, no spaces or
 * control characters (the URL parser would silently drop tabs and newlines, and the signature
 * would then cover a URL the app never sees), no credentials (they would travel in every
 * relay, and be stored), and of a sane length. A fragment is allowed: SignalWire documents
 * `#ot=`, `#rt=` and `#tt=` on a callback URL to tune its delivery timeouts. A fragment is
 * never sent in a request, so the relay calls and signs the URL without it (relayUrl).
 */
export function callbackUrlProblem(value: string): string | null {
  if (value.length > MAX_CALLBACK_URL_LENGTH) {
    return `is longer than ${MAX_CALLBACK_URL_LENGTH} characters`;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(value)) return 'contains spaces or control characters';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not an absolute URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'is not an http(s) URL';
  if (url.hostname === '') return 'has no host';
  if (url.username !== '' || url.password !== '') return 'must not contain credentials';
  return null;
}

/**
 * A callback URL as it is called and signed: without its fragment, which no HTTP client
 * sends, so the app sees (and validates a signature against) the URL without it. Otherwise
 * exactly as given, as SignalWire signs (SIGNALWIRE.md): an app checks a signature against the
 * URL it configured (the SDK's `validateRequest` documents its `url` so). The relay calls the
 * path and query as written too, where HTTP can carry them (relay-transport.ts requestTarget).
 */
export function relayUrl(callbackUrl: string): string {
  const hash = callbackUrl.indexOf('#');
  return hash === -1 ? callbackUrl : callbackUrl.slice(0, hash);
}

/**
 * Whether a text has more than `max` characters as a person counts them (code points), so an
 * emoji is one, not two. A code point is one or two UTF-16 units, so the count lies between
 * half the length and the length: only a text between `max` and 2 × `max` units long is
 * counted. A 256 KiB Body (the proxy's limit) took 10–40 ms of blocked loop to count.
 */
function exceedsChars(value: string, max: number): boolean {
  if (value.length <= max) return false;
  if (value.length > 2 * max) return true;
  return [...value].length > max;
}

/** `sms` unless there is media or MMS was forced (seed 001). */
export function messageKind(media: readonly string[], sendAsMms: boolean): 'sms' | 'mms' {
  return media.length > 0 || sendAsMms ? 'mms' : 'sms';
}

// ---------------------------------------------------------------------------------------------
// Compatibility create

/** A raw create request: a parsed form (repeated keys → arrays) or a JSON object. */
export type CompatFields = Readonly<Record<string, unknown>>;

export interface CompatCreateRequest {
  to: string;
  from: string | null;
  messagingServiceSid: string | null;
  body: string | null;
  mediaUrls: string[];
  sendAsMms: boolean;
  statusCallback: string | null;
  applicationSid: string | null;
  maxPrice: string | null;
  validityPeriod: number;
}

type Scalar = { present: false } | { present: true; value: string | null };

/**
 * The compatibility parameters that take one value: parseCompatCreate reads the first of a
 * repeated one, and the proxy sends upstream only that first (proxy/request-body.ts withField),
 * so what SignalWire sends and what is recorded cannot be two different values.
 */
export const COMPAT_SINGLE_VALUED = [
  'To',
  'From',
  'MessagingServiceSid',
  'Body',
  'StatusCallback',
  'ValidityPeriod',
  'MaxPrice',
  'SendAsMms',
  'ApplicationSid',
] as const;

type CompatSingleValued = (typeof COMPAT_SINGLE_VALUED)[number];

/**
 * The value a repeated single-valued parameter is read as: the first one given, an empty
 * string (or JSON null) not counting — form clients render unset fields as "", and a hidden
 * field's "" ahead of the app's own `StatusCallback` must not hide it (the app's callbacks
 * would be lost: never recorded, never relayed). All empty: the first. The proxy forwards this
 * same value upstream alone (src/proxy/request-body.ts withField), so SignalWire reads what is
 * recorded.
 */
export function givenValue<T>(values: readonly T[]): T | undefined {
  return values.find((value) => value !== '' && value !== null) ?? values[0];
}

/**
 * One value of a single-valued parameter: of repeats, the one givenValue reads; JSON numbers
 * and booleans become their text; an empty string counts as absent, because form clients
 * render unset fields as "".
 * `value: null` means present but not a scalar (an object), which no rule accepts.
 */
function scalar(fields: CompatFields, key: CompatSingleValued): Scalar {
  if (!Object.hasOwn(fields, key)) return { present: false };
  let raw = fields[key];
  if (Array.isArray(raw)) raw = givenValue(raw);
  if (raw === undefined || raw === null || raw === '') return { present: false };
  if (typeof raw === 'string') return { present: true, value: raw };
  if (typeof raw === 'number' || typeof raw === 'boolean')
    return { present: true, value: String(raw) };
  return { present: true, value: null };
}

/** MediaUrl as a list: a single string, repeated form keys, or a JSON array. */
function mediaList(raw: unknown): unknown[] {
  if (raw === undefined || raw === null || raw === '') return [];
  return Array.isArray(raw) ? raw.filter((item) => item !== '') : [raw];
}

/** `true`/`false` in the spellings form clients send; undefined when not boolean-ish. */
export function parseBooleanish(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'string') return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return undefined;
}

/** The offending value inside a message, when it is text (objects are not echoed). */
function shown(value: string | null): string {
  return value === null ? '' : ` ${value}`;
}

function compatInvalid(code: number, message: string): ApiFailure<CompatErrorBody> & { ok: false } {
  return { ok: false, ...compatError(400, code, message) };
}

/**
 * Validates a compatibility create request. Checks run in the order a client fixes them
 * (addressing, then content, then options) and the first failure is answered, as the
 * compatibility API reports one error per response.
 */
export function parseCompatCreate(
  fields: CompatFields,
): ParseResult<CompatCreateRequest, CompatErrorBody> {
  const C = COMPAT_CODES;

  const to = scalar(fields, 'To');
  if (!to.present) {
    return compatInvalid(
      C.toRequired,
      "The destination 'To' phone number is required to send an SMS",
    );
  }
  if (to.value === null || !isE164(to.value)) {
    return compatInvalid(
      C.invalidTo,
      `The 'To' number${shown(to.value)} is not a valid phone number. Please use E.164 format, i.e. +15558675309`,
    );
  }

  const from = scalar(fields, 'From');
  const service = scalar(fields, 'MessagingServiceSid');
  if (!from.present && !service.present) {
    return compatInvalid(
      C.fromRequired,
      "A 'From' phone number or a 'MessagingServiceSid' is required to send a message",
    );
  }
  if (from.present && (from.value === null || !isSender(from.value))) {
    return compatInvalid(
      C.invalidFrom,
      `The 'From' number${shown(from.value)} is not a valid phone number or short code. Please use E.164 format, i.e. +15558675309`,
    );
  }
  if (service.present && (service.value === null || !UUID.test(service.value))) {
    return compatInvalid(C.invalidMessagingServiceSid, "The 'MessagingServiceSid' is invalid");
  }

  const media = mediaList(fields['MediaUrl']);
  const bodyPresent =
    Object.hasOwn(fields, 'Body') && fields['Body'] !== undefined && fields['Body'] !== null;
  const body = scalar(fields, 'Body');
  if (body.present && body.value === null) {
    return compatInvalid(C.invalidArgument, "The 'Body' parameter must be a string");
  }
  const bodyText = body.present ? body.value : null;
  if (bodyText === null && media.length === 0) {
    // An explicitly empty Body gets "body is required"; a request with neither parameter gets
    // the "body or media" code, which names both ways to fix it.
    return bodyPresent
      ? compatInvalid(C.bodyRequired, 'Message body is required')
      : compatInvalid(
          C.bodyOrMediaRequired,
          "A 'Body' or 'MediaUrl' parameter is required to send a message",
        );
  }
  if (bodyText !== null && exceedsChars(bodyText, MAX_BODY_CHARS)) {
    return compatInvalid(
      C.bodyTooLong,
      `The concatenated message body exceeds the ${MAX_BODY_CHARS} character limit`,
    );
  }
  if (media.length > MAX_MEDIA) {
    return compatInvalid(
      C.tooManyMedia,
      `Number of media files exceeds allowed limit of ${MAX_MEDIA}`,
    );
  }
  const badMedia = media.find((url) => typeof url !== 'string' || !isHttpUrl(url));
  if (badMedia !== undefined) {
    return compatInvalid(C.invalidMediaUrl, `Invalid media URL: ${String(badMedia)}`);
  }

  const statusCallback = scalar(fields, 'StatusCallback');
  if (statusCallback.present) {
    const problem =
      statusCallback.value === null ? 'is not a URL' : callbackUrlProblem(statusCallback.value);
    if (problem !== null) {
      // The URL itself is not echoed: it may carry credentials.
      return compatInvalid(C.invalidStatusCallback, `The 'StatusCallback' URL ${problem}`);
    }
  }

  const validity = scalar(fields, 'ValidityPeriod');
  let validityPeriod = DEFAULT_VALIDITY_PERIOD;
  if (validity.present) {
    const n =
      validity.value !== null && /^\d+$/.test(validity.value) ? Number(validity.value) : NaN;
    if (!(n >= VALIDITY_PERIOD_MIN && n <= VALIDITY_PERIOD_MAX)) {
      return compatInvalid(
        C.invalidValidityPeriod,
        `The 'ValidityPeriod' must be an integer between ${VALIDITY_PERIOD_MIN} and ${VALIDITY_PERIOD_MAX}`,
      );
    }
    validityPeriod = n;
  }

  const maxPrice = scalar(fields, 'MaxPrice');
  if (maxPrice.present && (maxPrice.value === null || !MAX_PRICE.test(maxPrice.value))) {
    return compatInvalid(
      C.invalidMaxPrice,
      "The 'MaxPrice' must be a decimal with up to 4 decimal places",
    );
  }

  const sendAsMmsRaw = scalar(fields, 'SendAsMms');
  let sendAsMms = false;
  if (sendAsMmsRaw.present) {
    const parsed = parseBooleanish(sendAsMmsRaw.value);
    if (parsed === undefined) {
      return compatInvalid(C.invalidArgument, "The 'SendAsMms' parameter must be true or false");
    }
    sendAsMms = parsed;
  }

  const applicationSid = scalar(fields, 'ApplicationSid');
  if (
    applicationSid.present &&
    (applicationSid.value === null || !UUID.test(applicationSid.value))
  ) {
    return compatInvalid(C.invalidApplicationSid, 'The provided ApplicationSid is invalid');
  }

  return {
    ok: true,
    value: {
      to: to.value,
      from: from.present ? from.value : null,
      messagingServiceSid: service.present ? service.value : null,
      body: bodyText,
      mediaUrls: media as string[],
      sendAsMms,
      statusCallback: statusCallback.present ? statusCallback.value : null,
      applicationSid: applicationSid.present ? applicationSid.value : null,
      maxPrice: maxPrice.present ? maxPrice.value : null,
      validityPeriod,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Native create

export interface NativeCreateRequest {
  to: string;
  from: string;
  body: string | null;
  media: string[];
  sendAsMms: boolean;
  statusCallback: string | null;
  customVariables: Record<string, string>;
}

/**
 * Native error codes, from SignalWire's REST error catalogue: `missing_required_parameter`
 * ("blank or empty, but it is required"), `invalid_parameter` (its catch-all for field
 * validators, with a descriptive message) and `body_or_media_required` (seed 003).
 */
export const NATIVE_CODES = {
  missingRequired: 'missing_required_parameter',
  invalid: 'invalid_parameter',
  bodyOrMediaRequired: 'body_or_media_required',
} as const;

function validationError(code: string, message: string, attribute: string | null): NativeErrorItem {
  return nativeErrorItem('validation_error', code, message, attribute);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON null and a missing key mean the same: not set. */
function optional(json: Record<string, unknown>, key: string): unknown {
  const value = json[key];
  return value === null ? undefined : value;
}

function checkCustomVariables(raw: unknown, errors: NativeErrorItem[]): Record<string, string> {
  const attr = 'custom_variables';
  if (raw === undefined) return {};
  if (!isPlainObject(raw)) {
    errors.push(
      validationError(
        NATIVE_CODES.invalid,
        'Custom variables must be an object of string values.',
        attr,
      ),
    );
    return {};
  }
  const entries = Object.entries(raw);
  if (entries.length > MAX_CUSTOM_VARIABLES) {
    // The count alone refuses them: the pairs are not looked at one by one, which answered a
    // 256 KiB body of 20,000 bad keys with 20,000 errors (4.9 MB, built on the event loop).
    errors.push(
      validationError(
        NATIVE_CODES.invalid,
        `Custom variables must have at most ${MAX_CUSTOM_VARIABLES} pairs (has ${entries.length}).`,
        attr,
      ),
    );
    return {};
  }
  const out: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (!CUSTOM_VARIABLE_KEY.test(key)) {
      errors.push(
        validationError(
          NATIVE_CODES.invalid,
          `Custom variable key '${key}' must match [A-Za-z_][A-Za-z0-9_]*.`,
          attr,
        ),
      );
      continue;
    }
    const reserved = RESERVED_CUSTOM_VARIABLE_PREFIXES.find((p) => key.startsWith(p));
    if (reserved) {
      errors.push(
        validationError(
          NATIVE_CODES.invalid,
          `Custom variable key '${key}' uses the reserved prefix '${reserved}'.`,
          attr,
        ),
      );
      continue;
    }
    if (typeof value !== 'string' || value === '') {
      errors.push(
        validationError(
          NATIVE_CODES.invalid,
          `Custom variable '${key}' must be a non-empty string.`,
          attr,
        ),
      );
      continue;
    }
    if (Buffer.byteLength(value, 'utf8') > MAX_CUSTOM_VARIABLE_BYTES) {
      errors.push(
        validationError(
          NATIVE_CODES.invalid,
          `Custom variable '${key}' is too long (maximum is ${MAX_CUSTOM_VARIABLE_BYTES} bytes).`,
          attr,
        ),
      );
      continue;
    }
    out[key] = value;
  }
  return out;
}

/** Validates a native create request, collecting every problem (the API reports them all). */
export function parseNativeCreate(
  json: unknown,
): ParseResult<NativeCreateRequest, NativeErrorBody> {
  if (!isPlainObject(json)) {
    return {
      ok: false,
      status: 422,
      error: {
        errors: [
          validationError(NATIVE_CODES.invalid, 'The request body must be a JSON object.', null),
        ],
      },
    };
  }
  const errors: NativeErrorItem[] = [];
  const C = NATIVE_CODES;

  const to = optional(json, 'to');
  if (to === undefined || to === '') {
    errors.push(validationError(C.missingRequired, 'To is required.', 'to'));
  } else if (typeof to !== 'string' || !(E164.test(to) || PASSTHROUGH.test(to))) {
    errors.push(
      validationError(
        C.invalid,
        'To must be in E.164 format (+ followed by 5-17 digits) or a passthrough number like 988.',
        'to',
      ),
    );
  }

  const from = optional(json, 'from');
  if (from === undefined || from === '') {
    errors.push(validationError(C.missingRequired, 'From is required.', 'from'));
  } else if (typeof from !== 'string' || !isSender(from)) {
    errors.push(
      validationError(C.invalid, 'From must be in E.164 format or a 5-6 digit short code.', 'from'),
    );
  }

  const body = optional(json, 'body');
  let bodyText: string | null = null;
  if (body !== undefined && typeof body !== 'string') {
    errors.push(validationError(C.invalid, 'Body must be a string.', 'body'));
  } else if (typeof body === 'string' && body !== '') {
    bodyText = body;
    if (exceedsChars(body, MAX_BODY_CHARS)) {
      errors.push(
        validationError(
          C.invalid,
          `Body is too long (maximum is ${MAX_BODY_CHARS} characters).`,
          'body',
        ),
      );
    }
  }

  const mediaRaw = optional(json, 'media');
  let media: string[] = [];
  if (mediaRaw !== undefined && !Array.isArray(mediaRaw)) {
    errors.push(validationError(C.invalid, 'Media must be an array of URLs.', 'media'));
  } else if (Array.isArray(mediaRaw)) {
    const overCount = mediaRaw.length > MAX_MEDIA;
    if (overCount) {
      errors.push(
        validationError(C.invalid, `Media must have at most ${MAX_MEDIA} items.`, 'media'),
      );
    }
    // Past the count, only as many items as a list may hold (and one) are looked at: a 250 KB
    // list of 62 500 items, each parsed as a URL (most throwing), held the event loop 1–2.5 s.
    const looked = overCount ? mediaRaw.slice(0, MAX_MEDIA + 1) : mediaRaw;
    const bad = looked.filter((url) => typeof url !== 'string' || !isHttpUrl(url));
    if (bad.length > 0) {
      errors.push(
        validationError(C.invalid, 'Media must contain only HTTP or HTTPS URLs.', 'media'),
      );
    }
    media = looked.filter((url): url is string => typeof url === 'string');
  }

  const hasMedia = Array.isArray(mediaRaw) && mediaRaw.length > 0;
  const bodyMalformed = body !== undefined && typeof body !== 'string';
  if (bodyText === null && !hasMedia && !bodyMalformed) {
    errors.push(
      validationError(C.bodyOrMediaRequired, 'Body must be included if there is no Media.', 'body'),
    );
  }

  const sendAsMmsRaw = optional(json, 'send_as_mms');
  if (sendAsMmsRaw !== undefined && typeof sendAsMmsRaw !== 'boolean') {
    errors.push(validationError(C.invalid, 'Send as MMS must be a boolean.', 'send_as_mms'));
  }

  const callback = optional(json, 'status_callback');
  if (callback !== undefined) {
    const problem = typeof callback === 'string' ? callbackUrlProblem(callback) : 'is not a URL';
    if (problem !== null) {
      errors.push(
        validationError(
          C.invalid,
          `Status callback must be a valid HTTP or HTTPS URL: it ${problem}.`,
          'status_callback',
        ),
      );
    }
  }

  const customVariables = checkCustomVariables(optional(json, 'custom_variables'), errors);

  if (errors.length > 0) return { ok: false, status: 422, error: { errors } };
  return {
    ok: true,
    value: {
      to: to as string,
      from: from as string,
      body: bodyText,
      media,
      sendAsMms: sendAsMmsRaw === true,
      statusCallback: (callback as string | undefined) ?? null,
      customVariables,
    },
  };
}
