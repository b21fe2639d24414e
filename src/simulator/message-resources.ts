import type { ScenarioName, SimulatorApi } from './scenarios';

/**
 * The simulator's record of one message, and the provider-shaped resources built from it:
 * the compatibility Message object (seed 004) and the native create response (seeds 001, 003),
 * and the cXML Application a send can name.
 */
export interface SimulatedMessage {
  id: string;
  /** Creation order within the simulator: lists run newest first by it, page tokens name it. */
  seq: number;
  api: SimulatorApi;
  projectId: string;
  from: string;
  to: string;
  body: string;
  media: string[];
  /** The sid of each entry of `media`, in its order: the compatibility Media subresource. */
  mediaSids: string[];
  kind: 'sms' | 'mms';
  numSegments: number;
  messagingServiceSid: string | null;
  statusCallback: string | null;
  customVariables: Record<string, string>;
  scenario: ScenarioName;
  status: string;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: Date;
  updatedAt: Date;
  sentAt: Date | null;
}

export const COMPAT_API_VERSION = '2010-04-01';

/** RFC 2822 in UTC as the compatibility API writes it: `Mon, 13 Aug 2018 21:38:46 +0000`. */
export function rfc2822(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

/** ISO 8601 UTC to the second, as native payloads write it: `2026-03-17T22:26:57Z`. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function compatMessageUri(accountSid: string, sid: string): string {
  return `/api/laml/${COMPAT_API_VERSION}/Accounts/${accountSid}/Messages/${sid}`;
}

/** The compatibility Message object, every field of seed 004 in its order. */
export function toCompatResource(m: SimulatedMessage): Record<string, unknown> {
  const uri = compatMessageUri(m.projectId, m.id);
  return {
    account_sid: m.projectId,
    api_version: COMPAT_API_VERSION,
    body: m.body,
    num_segments: m.numSegments,
    num_media: m.media.length,
    date_created: rfc2822(m.createdAt),
    date_sent: m.sentAt ? rfc2822(m.sentAt) : null,
    date_updated: rfc2822(m.updatedAt),
    direction: 'outbound-api',
    error_code: m.errorCode,
    error_message: m.errorMessage,
    from: m.from,
    // Not yet rated: the price is known only once the carrier has the message.
    price: null,
    price_unit: 'USD',
    sid: m.id,
    status: m.status,
    to: m.to,
    messaging_service_sid: m.messagingServiceSid,
    uri,
    subresource_uris: { media: `${uri}/Media` },
  };
}

/**
 * One entry of a message's compatibility Media subresource, as SignalWire's reference shows it.
 * The content type is guessed from the URL's extension: the simulator never downloads media.
 */
export function toMediaResource(m: SimulatedMessage, index: number): Record<string, unknown> {
  const sid = m.mediaSids[index] ?? '';
  return {
    account_sid: m.projectId,
    content_type: contentTypeOf(m.media[index] ?? ''),
    date_created: rfc2822(m.createdAt),
    date_updated: rfc2822(m.createdAt),
    parent_sid: m.id,
    sid,
    uri: `${compatMessageUri(m.projectId, m.id)}/Media/${sid}.json`,
  };
}

const CONTENT_TYPES: Record<string, string> = {
  gif: 'image/gif',
  jpeg: 'image/jpeg',
  jpg: 'image/jpeg',
  mp4: 'video/mp4',
  pdf: 'application/pdf',
  png: 'image/png',
};

function contentTypeOf(url: string): string {
  const path = url.split(/[?#]/)[0] ?? '';
  const extension = /\.([a-z0-9]+)$/i.exec(path)?.[1];
  return CONTENT_TYPES[extension?.toLowerCase() ?? ''] ?? 'application/octet-stream';
}

/** The native create response (seed 003), every field in its order. */
export function toNativeResource(m: SimulatedMessage): Record<string, unknown> {
  return {
    id: m.id,
    from: m.from,
    to: m.to,
    body: m.body,
    status: m.status,
    direction: 'outbound',
    kind: m.kind,
    media: m.media,
    number_of_segments: m.numSegments,
    error_code: m.errorCode,
    error_message: m.errorMessage,
    created_at: isoSeconds(m.createdAt),
    project_id: m.projectId,
    status_callback_url: m.statusCallback,
    message_uri: `/api/messaging/logs/${m.id}`,
  };
}

/**
 * The native message log (`GET /api/messaging/logs/{id}`): the native API has no GET for a
 * message, so this is what a sweep reads (RESEARCH.md §3.2). Compatibility messages appear
 * too, with `source: laml`.
 */
export function toMessageLog(m: SimulatedMessage): Record<string, unknown> {
  return {
    id: m.id,
    from: m.from,
    to: m.to,
    status: m.status,
    direction: 'outbound',
    kind: m.kind,
    source: m.api === 'native' ? 'realtime_api' : 'laml',
    number_of_segments: m.numSegments,
    error_code: m.errorCode,
    error_message: m.errorMessage,
    created_at: isoSeconds(m.createdAt),
    updated_at: isoSeconds(m.updatedAt),
    ...(m.api === 'cxml' && { url: compatMessageUri(m.projectId, m.id) }),
  };
}

/** A cXML Application: only what a send's ApplicationSid uses, its message status callback. */
export interface SimulatedApplication {
  sid: string;
  projectId: string;
  friendlyName: string;
  messageStatusCallback: string | null;
  createdAt: Date;
}

/**
 * The compatibility Application object as SignalWire's reference shows it: the message status
 * callback under both its names (`sms_status_callback` is the older one).
 */
export function toApplicationResource(a: SimulatedApplication): Record<string, unknown> {
  return {
    account_sid: a.projectId,
    api_version: COMPAT_API_VERSION,
    date_created: rfc2822(a.createdAt),
    date_updated: rfc2822(a.createdAt),
    friendly_name: a.friendlyName,
    message_status_callback: a.messageStatusCallback,
    sid: a.sid,
    sms_status_callback: a.messageStatusCallback,
    uri: `/api/laml/${COMPAT_API_VERSION}/Accounts/${a.projectId}/Applications/${a.sid}.json`,
  };
}
