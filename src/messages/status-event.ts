import { createHash } from 'node:crypto';
import type { Api, CanonicalStatus, EventSource } from './statuses';

/**
 * `to`, `from`, `error_code` and `project_id` are keys of the messages table's btree indexes
 * (project_id: messages_sweep_due_idx, migration 0014, for messages not yet final), whose
 * entries PostgreSQL caps at about 2.7 kB: a longer value would be refused by the write on every
 * attempt (and, spooled during an outage, at replay: acknowledged, then dead-lettered), and
 * would fail the group commit it shared with other senders' callbacks. A real one is a phone
 * number, a sender name, a code of a few characters or a UUID; 256 leaves room for anything a
 * provider could send. Callbacks refuse a longer value (src/callbacks/normalize.ts), lookups
 * count such an answer as unusable (src/reconcile/lookup-event.ts; their project is the
 * message's own). A new btree index on a text column of `messages` needs its field bounded here.
 */
export const MAX_INDEXED_LENGTH = 256;

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
  /**
   * Index in SIGNALWIRE_SIGNING_KEYS of the key whose signature verified this callback;
   * absent when a token authenticated it.
   */
  verifiedKeyIndex?: number;
  /** Facts about the message that only a send knows (the proxy sets them). */
  send?: SendFacts;
  /** The callback as received, relayed to the caller's own status callback (DESIGN §10). */
  relay?: RelayPayload;
}

/**
 * What relaying an event needs (src/relay): the request exactly as SignalWire made it, and
 * which signing key to sign it with again. Only the relay outbox stores it
 * (messages/relay-outbox.ts), and only for messages with a `client_status_callback`.
 */
export interface RelayPayload {
  method: 'POST' | 'GET';
  /** The body's Content-Type as received; null for a GET. */
  contentType: string | null;
  /** The raw body bytes (a GET: its query string), base64: a spool line carries them as text. */
  body: string;
  /**
   * Fingerprint of the key that verified the original (signingKeyRef); null: none did, and the
   * relay picks one by the message's project (signalwire/signing.ts relaySigningKey).
   */
  keyRef: string | null;
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
