import { errorReason } from './error-reasons';
import type { HistoryRow, MessageRow } from './messages.repository';

/** The wire shape of a message (DESIGN §6): snake_case, ISO 8601 UTC; rows never leak. */
export interface MessageDto {
  id: string;
  api: string;
  project_id: string | null;
  from: string | null;
  to: string | null;
  kind: string | null;
  status: string;
  raw_status: string;
  /** Rank of `status` (DESIGN §3): what a later event must reach to replace it. */
  status_rank: number;
  error_code: string | null;
  /** What error_code means, from the per-API table (error-reasons.ts); null when unknown. */
  error_reason: string | null;
  error_message: string | null;
  conflict: boolean;
  num_segments: number | null;
  num_media: number | null;
  ref: string | null;
  sent_via_proxy: boolean;
  client_status_callback: string | null;
  /** Reconciliation gave up: still not final after the last lookup (DESIGN §11). */
  stuck: boolean;
  /** Lookups reconciliation made since the message's last event (0: none yet). */
  sweep_step: number;
  /** When reconciliation last looked the message up; null: never. */
  sweep_checked_at: string | null;
  /** Why the last lookup told nothing (e.g. `not_found`, `unauthorized`); null when it did. */
  sweep_error: string | null;
  body?: string;
  created_at: string;
  updated_at: string;
  last_event_at: string;
  history?: HistoryDto[];
}

export interface HistoryDto {
  seq: number;
  status: string;
  raw_status: string;
  error_code: string | null;
  error_reason: string | null;
  error_message: string | null;
  source: string;
  provider_timestamp: string | null;
  received_at: string;
}

/**
 * `storeBody`: STORE_BODY of this run. Without it a body shows only when an earlier run with it
 * stored a text: `''` (a message redacted at SignalWire, redaction.ts) is no text.
 */
export function toMessageDto(
  row: MessageRow,
  history?: readonly HistoryRow[],
  { storeBody = false }: { storeBody?: boolean } = {},
): MessageDto {
  return {
    id: row.id,
    api: row.api,
    project_id: row.project_id,
    from: row.from,
    to: row.to,
    kind: row.kind,
    status: row.status,
    raw_status: row.raw_status,
    status_rank: row.status_rank,
    error_code: row.error_code,
    error_reason: errorReason(row.api, row.error_code),
    error_message: row.error_message,
    conflict: row.conflict,
    num_segments: row.num_segments,
    num_media: row.num_media,
    ref: row.ref,
    sent_via_proxy: row.sent_via_proxy,
    client_status_callback: row.client_status_callback,
    stuck: row.stuck,
    sweep_step: row.sweep_step,
    sweep_checked_at: row.sweep_checked_at?.toISOString() ?? null,
    sweep_error: row.sweep_error,
    // Present only when STORE_BODY=true stored one.
    ...(row.body !== null && (storeBody || row.body !== '') && { body: row.body }),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    last_event_at: row.last_event_at.toISOString(),
    ...(history && { history: history.map((event) => toHistoryDto(event, row.api)) }),
  };
}

/** A history entry; its API is its message's (one message id belongs to one API). */
function toHistoryDto(row: HistoryRow, api: MessageRow['api']): HistoryDto {
  return {
    seq: row.seq,
    status: row.status,
    raw_status: row.raw_status,
    error_code: row.error_code,
    error_reason: errorReason(api, row.error_code),
    error_message: row.error_message,
    source: row.source,
    provider_timestamp: row.provider_timestamp?.toISOString() ?? null,
    received_at: row.received_at.toISOString(),
  };
}
