import { z } from 'zod';
import type { StatusEvent } from '../messages/status-event';
import { CANONICAL_STATUSES } from '../messages/statuses';

/**
 * One spooled event per line: `{"v":1,"event":{…}}` with dates as ISO strings. The version
 * lets a later release read what an older one left behind after a crash.
 */

const isoDate = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

const SpooledEvent = z.object({
  messageId: z.string().min(1),
  api: z.enum(['cxml', 'native']),
  source: z.enum(['proxy', 'callback', 'reconcile', 'replay']),
  projectId: z.string().nullable(),
  status: z.enum(CANONICAL_STATUSES as [StatusEvent['status'], ...StatusEvent['status'][]]),
  rawStatus: z.string(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  numSegments: z.number().nullable(),
  numMedia: z.number().nullable(),
  providerTimestamp: isoDate.nullable(),
  receivedAt: isoDate,
  // Checked, not rebuilt: z.record copies each key into a new object by assignment, and
  // assigning `__proto__` sets the copy's prototype instead of keeping the key, so a payload
  // holding one would come back changed. The object JSON.parse made is kept as it is (its
  // `__proto__` is an own property there, inert).
  raw: z.custom<Record<string, unknown>>(isPlainObject, 'raw must be a JSON object'),
  // Optional, so lines written before they existed still decode. A replayed token event is
  // checked against its message's binding like a live one (record-events.ts).
  tokenRef: z.string().optional(),
  tokenLegacy: z.boolean().optional(),
  verifiedKeyIndex: z.number().int().min(0).optional(),
  send: z
    .object({
      ref: z.string().nullable(),
      kind: z.enum(['sms', 'mms']).nullable(),
      clientStatusCallback: z.string().nullable(),
      body: z.string().nullable(),
    })
    .optional(),
  // Added with the relay (DESIGN §10); lines written before it do not have it and still decode.
  relay: z
    .object({
      method: z.enum(['POST', 'GET']),
      contentType: z.string().nullable(),
      body: z.base64(),
      keyRef: z.string().nullable(),
    })
    .optional(),
});

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const SpoolRecord = z.object({ v: z.literal(1), event: SpooledEvent });

/** One line, newline included. */
export function encodeSpoolLine(event: StatusEvent): string {
  return `${JSON.stringify({ v: 1, event })}\n`;
}

/** The event of one line, or undefined when the line is not a valid record. */
export function decodeSpoolLine(line: string): StatusEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  const parsed = SpoolRecord.safeParse(value);
  return parsed.success ? parsed.data.event : undefined;
}
