/** The query API's answers the page reads (DESIGN §6, §10), as the browser sees them. */

export interface Stats {
  created_since: string;
  created_until: string;
  total: number;
  by_status: Record<string, number>;
  delivery_rate: number | null;
  by_error: Array<{ api: string; error_code: string; error_reason: string | null; count: number }>;
  latency_ms: { p50: number | null; p95: number | null; p99: number | null };
  final_within_10s: number | null;
  stuck: number;
  conflicts: number;
  series?: Array<{
    start: string;
    total: number;
    delivered: number;
    undelivered: number;
    failed: number;
  }>;
}

export interface HistoryEntry {
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

export interface Message {
  id: string;
  api: string;
  from: string | null;
  to: string | null;
  kind: string | null;
  status: string;
  raw_status: string;
  error_code: string | null;
  error_reason: string | null;
  error_message: string | null;
  conflict: boolean;
  stuck: boolean;
  created_at: string;
  last_event_at: string;
  history?: HistoryEntry[];
}

export interface MessagePage {
  data: Message[];
  next_cursor: string | null;
}

export interface FeedEvent {
  seq: number;
  message_id: string;
  api: string;
  status: string;
  error_code: string | null;
  error_reason: string | null;
  source: string;
  received_at: string;
  message_status: string;
}

export interface FeedPage {
  data: FeedEvent[];
  next_cursor: string;
}

export interface Relay {
  id: number;
  message_id: string;
  url: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  updated_at: string;
}

export interface RelayPage {
  data: Relay[];
  next_cursor: string | null;
}
