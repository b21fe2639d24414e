import express, { Router } from 'express';
import type { Request, Response } from 'express';
import type { Config } from '../config';
import type { Db } from '../db/database';
import { AppError, badRequest, forbidden, unauthorized, unavailable } from '../errors';
import type { Logger } from '../logger';
import type { EventRecorder } from '../messages/event-recorder';
import { findMessageRef } from '../messages/messages.repository';
import type { RecordOutcome } from '../messages/record-events';
import type { StatusEvent } from '../messages/status-event';
import type { Api } from '../messages/statuses';
import { maskTokens } from '../http/request-log';
import { verifyCallbackToken } from './callback-token';
import { normalizeCxmlCallback, normalizeNativeCallback } from './normalize';
import { relayPayloadOf } from './relay-payload';
import type { CallbackFields } from './normalize';
import { verifySignature } from './signature';
import type { SignatureFailure } from './signature';

export const CALLBACK_BODY_LIMIT = '64kb';

export type CallbackOutcome = RecordOutcome | `refused_${string}`;

export interface CallbackDeps {
  config: Config;
  db: Db;
  logger: Logger;
  recorder: EventRecorder;
  clock?: () => Date;
  /** Observes every callback's outcome (metrics). */
  onCallback?: (api: Api, status: string, outcome: CallbackOutcome) => void;
  onSignatureFailure?: (reason: SignatureFailure) => void;
}

interface ParsedCallback {
  fields: CallbackFields;
  formParams: Array<[string, string]>;
}

/**
 * The public ingestion routes (DESIGN §2). A callback is answered 200 only after its event
 * is durable — duplicates too, so SignalWire stops retrying — and 503 when it cannot be.
 */
export function callbackRoutes(deps: CallbackDeps): Router {
  const router = Router();
  // Raw bytes are needed: signatures cover the body exactly as sent.
  const rawBody = express.raw({ type: () => true, limit: CALLBACK_BODY_LIMIT });

  const cxml = ['/callbacks/cxml', '/callbacks/cxml/:token'];
  const native = ['/callbacks/native', '/callbacks/native/:token'];
  router.post(cxml, rawBody, (req, res) => handle(deps, 'cxml', req, res));
  // A cXML Application may be configured to call back with GET and query parameters.
  router.get(cxml, (req, res) => handle(deps, 'cxml', req, res));
  router.post(native, rawBody, (req, res) => handle(deps, 'native', req, res));
  return router;
}

async function handle(deps: CallbackDeps, api: Api, req: Request, res: Response): Promise<void> {
  const { config } = deps;
  let parsed: ParsedCallback;
  try {
    parsed = parseCallback(api, req);
  } catch (error) {
    // refused_malformed_body, refused_unsupported_media_type: bounded by the AppError codes.
    const code = error instanceof AppError ? error.code : 'malformed_body';
    deps.onCallback?.(api, 'invalid', `refused_${code}`);
    throw error;
  }
  const tokenRef = authenticate(deps, api, req, parsed);
  // PostgreSQL text and jsonb cannot hold NUL: such a callback could never be stored, and a
  // 503 would only make SignalWire retry it in vain.
  if (holdsNul(parsed.fields)) {
    deps.onCallback?.(api, 'invalid', 'refused_invalid');
    throw badRequest('invalid_character', 'NUL characters are not accepted');
  }

  const options = { receivedAt: (deps.clock ?? (() => new Date()))(), storeBody: config.storeBody };
  let event: StatusEvent;
  try {
    event =
      api === 'cxml'
        ? normalizeCxmlCallback(parsed.fields, options)
        : normalizeNativeCallback(parsed.fields, options);
  } catch (error) {
    deps.onCallback?.(api, 'invalid', 'refused_invalid');
    throw error;
  }

  // Relayed as received if the message has a client callback (DESIGN §10; src/relay).
  event.relay = relayPayloadOf(req, config.signingKeys, event.verifiedKeyIndex);

  if (tokenRef) {
    event.tokenRef = tokenRef;
    await checkTokenBinding(deps, api, req, event.messageId, tokenRef);
  }

  let outcome: RecordOutcome;
  try {
    outcome = await deps.recorder.record(event);
  } catch (error) {
    deps.onCallback?.(api, event.status, 'refused_unavailable');
    if (error instanceof AppError) throw error;
    deps.logger.error({ err: error, request_id: req.id }, 'callback could not be made durable');
    throw unavailable('The event could not be stored; retry later', 2);
  }
  deps.onCallback?.(api, event.status, outcome);

  // Plain Node writes: Express's send() would parse and rebuild the content type each time.
  res.statusCode = 200;
  if (api === 'cxml') {
    res.setHeader('Content-Type', 'text/xml; charset=utf-8');
    res.end('<Response/>');
  } else {
    res.end();
  }
}

function parseCallback(api: Api, req: Request): ParsedCallback {
  if (req.method === 'GET') {
    const query = req.originalUrl.includes('?')
      ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1)
      : '';
    // Signed GET callbacks cover the full URL and no body parameters.
    return { fields: toFields([...new URLSearchParams(query)]), formParams: [] };
  }
  const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const type = mediaType(req);
  if (type === 'application/json' || JSON_SUFFIX.test(type)) {
    return { fields: parseJsonObject(raw), formParams: [] };
  }
  if (type === 'application/x-www-form-urlencoded' && api === 'cxml') {
    const pairs = [...new URLSearchParams(raw.toString('utf8'))];
    return { fields: toFields(pairs), formParams: pairs };
  }
  const expected =
    api === 'cxml' ? 'application/x-www-form-urlencoded or application/json' : 'application/json';
  throw new AppError(415, 'unsupported_media_type', `Content-Type must be ${expected}`);
}

const JSON_SUFFIX = /^application\/[^/]+\+json$/;

/**
 * The body's media type, lower case and without parameters; '' without a body. What
 * `req.is()` answers, without parsing the header again for every type asked about.
 */
function mediaType(req: Request): string {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;
  const header = req.headers['content-type'];
  if (!hasBody || header === undefined) return '';
  const semicolon = header.indexOf(';');
  return (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase();
}

function parseJsonObject(raw: Buffer): CallbackFields {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('malformed_body', 'The body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest('malformed_body', 'The body must be a JSON object');
  }
  return value as CallbackFields;
}

/** Whether any key or string value, however deeply nested, contains a NUL character. */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some(holdsNul);
  for (const key in value) {
    if (key.includes('\0') || holdsNul((value as Record<string, unknown>)[key])) return true;
  }
  return false;
}

/** Form pairs to fields; a repeated key becomes an array. */
function toFields(pairs: Array<[string, string]>): CallbackFields {
  const fields: Record<string, string | string[]> = {};
  for (const [key, value] of pairs) {
    const existing = fields[key];
    if (existing === undefined) fields[key] = value;
    else fields[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return fields;
}

/** Either a valid signature or a valid per-send token (DESIGN §2 "Callback authentication"). */
/**
 * Either a valid per-send token or a valid signature (DESIGN §2 "Callback authentication").
 * Returns the token's ref when a valid token authenticated the callback.
 */
function authenticate(
  deps: CallbackDeps,
  api: Api,
  req: Request,
  parsed: ParsedCallback,
): string | null {
  const { config } = deps;
  const token = req.params.token;
  const tokenRef =
    typeof token === 'string' ? verifyCallbackToken(config.callbackTokenSecrets, token) : null;
  if (tokenRef || config.allowUnsignedCallbacks) return tokenRef;

  const result = verifySignature(config.signingKeys, config.publicBaseUrl, {
    headers: req.headers,
    originalUrl: req.originalUrl,
    rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
    formParams: parsed.formParams,
  });
  if (result.ok) return null;

  const reason: SignatureFailure | 'bad_token' =
    result.reason === 'missing' && token !== undefined ? 'bad_token' : result.reason;
  if (result.reason !== 'missing') deps.onSignatureFailure?.(result.reason);
  deps.onCallback?.(api, 'unauthenticated', `refused_${reason}`);
  deps.logger.warn(
    {
      request_id: req.id,
      reason,
      // What was tried helps fix a PUBLIC_BASE_URL mismatch; tokens are masked, keys never logged.
      candidate_urls: result.candidateUrls.map(maskUrlToken),
    },
    'callback refused',
  );
  if (reason === 'missing') throw unauthorized('Missing X-SignalWire-Signature or callback token');
  throw forbidden(
    reason === 'bad_token' ? 'invalid_token' : 'invalid_signature',
    reason === 'bad_token' ? 'The callback token is not valid' : 'The signature does not verify',
  );
}

/**
 * A token is minted for one send: once a message is bound to a ref (by the proxy, or by the
 * first token-authenticated callback), a token of another send cannot write to it. Several
 * messages may share a ref (a native send can produce several segment ids). When the database
 * cannot answer, the valid token alone authenticates and the event goes on to be made durable.
 */
async function checkTokenBinding(
  deps: CallbackDeps,
  api: Api,
  req: Request,
  messageId: string,
  tokenRef: string,
): Promise<void> {
  let boundRef: string | null | undefined;
  try {
    boundRef = await findMessageRef(deps.db, messageId);
  } catch {
    return;
  }
  if (!boundRef || boundRef === tokenRef) return;
  deps.onCallback?.(api, 'unauthenticated', 'refused_token_mismatch');
  deps.logger.warn({ request_id: req.id, reason: 'token_mismatch' }, 'callback refused');
  throw forbidden('token_mismatch', 'The callback token belongs to another send');
}

function maskUrlToken(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${maskTokens(parsed.pathname)}${parsed.search ? '?…' : ''}`;
}
