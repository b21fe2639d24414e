/** The query API's answers the page reads (DESIGN §6, §10), as the browser sees them. */

// The server's own types (type-only imports: esbuild erases them, nothing server-side is bundled),
// so a change to an answer's shape fails the page's typecheck instead of its users.
import type { HistoryDto, MessageDto } from '../../messages/message-dto';
import type { StatsDto } from '../../stats/stats-summary';

export type Stats = StatsDto;
export type HistoryEntry = HistoryDto;

/** The fields of a message the page shows. */
export type Message = Pick<
  MessageDto,
  | 'id'
  | 'api'
  | 'from'
  | 'to'
  | 'kind'
  | 'status'
  | 'raw_status'
  | 'error_code'
  | 'error_reason'
  | 'error_message'
  | 'conflict'
  | 'stuck'
  | 'created_at'
  | 'last_event_at'
  | 'history'
>;

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
