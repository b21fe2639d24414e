import { createHash } from 'node:crypto';
import type { Api, CanonicalStatus, EventSource } from './statuses';

/**
 * One status event, normalized from either callback format (or made by the proxy): the only
 * thing the status store records. Field names follow DESIGN §3.
 */
export interface StatusEvent {
  messageId: string;
  api: Api;
  source: EventSource;
  projectId: string | null;
  status: CanonicalStatus;
  rawStatus: string;
  errorCode: string | null;
  errorMessage: string | null;
  from: string | null;
  to: string | null;
  numSegments: number | null;
  numMedia: number | null;
  providerTimestamp: Date | null;
  receivedAt: Date;
  /** The payload as received, Body removed unless STORE_BODY=true. */
  raw: Record<string, unknown>;
  /**
   * Ref of the per-send callback token that authenticated this callback, if one did. It is
   * checked against the message's binding in the write's own transaction (record-events.ts).
   */
  tokenRef?: string;
  /** The token predates mint times: it may write to a message bound to its ref, never bind one. */
  tokenLegacy?: boolean;
  /** Index in SIGNALWIRE_SIGNING_KEYS of the key whose signature verified this callback. */
  verifiedKeyIndex?: number;
  /** Facts about the message that only a send knows (the proxy sets them). */
  send?: SendFacts;
}

export interface SendFacts {
  ref: string | null;
  kind: 'sms' | 'mms' | null;
  clientStatusCallback: string | null;
  /** Only when STORE_BODY=true. */
  body: string | null;
}

/**
 * Duplicate = same message id, raw status, error code and (when the format has one) provider
 * timestamp (DESIGN §3). Hashed to 32 bytes to keep the unique index small.
 */
export function dedupeKey(event: StatusEvent): Buffer {
  return createHash('sha256')
    .update(
      JSON.stringify([
        event.messageId,
        event.rawStatus.toLowerCase(),
        event.errorCode ?? '',
        event.providerTimestamp?.toISOString() ?? '',
        // The proxy's record of a send is never a duplicate of the provider's `queued` callback
        // (same id and status; natively often the same second as the send's `created_at`):
        // dropping whichever came second would lose the send facts or make the history depend
        // on arrival order. Callback keys are unchanged.
        ...(event.source === 'proxy' ? ['proxy'] : []),
      ]),
    )
    .digest();
}
