import type { Api } from './statuses';

/**
 * What an error code means, per API (DESIGN §3, SIGNALWIRE.md "Error reasons"). Numeric codes
 * mean different things at SignalWire and Twilio (30001 is "validity period exceeded" at
 * SignalWire, "queue overflow" at Twilio): these are SignalWire's meanings. The tables are
 * data — add a row when SignalWire documents a new code.
 */
const COMPATIBILITY_REASONS: Readonly<Record<string, string>> = {
  '21610': 'Blocked by the recipient or sent from a blacklisted number',
  '21611': "The 'From' number exceeded its queue of messages",
  '21614': "The 'To' number is not a valid mobile number",
  '30001': 'Validity period of the message exceeded',
  '30002': 'Account balance insufficient',
  '30003': 'Destination handset unreachable',
  '30004': 'Blocked by the destination carrier',
  '30005': 'Destination handset unknown',
  '30006': 'Not routable to the destination handset',
  '30007': 'Carrier violation: filtered as spam or disallowed content',
  '30008': 'Unknown upstream error',
  '30009': 'Validity period expired at the carrier',
  '30010': 'Maximum price exceeded',
  '30011': 'MMS expired, rejected or unsupported',
  '30012': 'MMS could not be sent',
  '30022': 'A2P 10DLC rate limit exceeded',
  '30027': 'T-Mobile daily limit reached',
  '63011': 'Not delivered to the carrier',
  '63019': 'Media download failed',
};

const NATIVE_REASONS: Readonly<Record<string, string>> = {
  unreachable_destination_handset:
    'Destination handset unreachable (busy, offline, not SMS-capable or storage full; often temporary)',
  unknown_destination_handset: 'Destination handset unknown',
  carrier_violation: 'Carrier violation: flagged as spam',
  message_filtered: "Blocked by SignalWire's own spam filter",
  message_blocked_by_carrier: 'Blocked by the carrier (for example, the recipient opted out)',
  message_blocked_by_number: 'The destination number blocked this sender',
  message_validity_period_expired_at_carrier: 'Validity period expired at the carrier',
  rejected_by_receiving_carrier_for_unspecified_reason:
    'Rejected by the receiving carrier for an unspecified reason',
  unable_to_deliver_to_carrier: 'Could not be handed to the carrier',
  unknown_error: 'Unknown carrier error',
  not_routable: 'No route to the destination',
  unrouteable_message: 'No route to the destination',
  associated_campaign_inactive: 'The 10DLC campaign is inactive at the carrier',
  associated_campaign_suspended: 'The 10DLC campaign is suspended at the carrier',
  campaign_throughput_exceeded: 'The 10DLC campaign throughput was exceeded',
  tmobile_daily_limit_reached: 'T-Mobile daily limit reached',
  sole_proprietor_daily_limit_exceeded: 'Sole proprietor daily limit (1,000) exceeded',
  pft_daily_limit_exceeded: 'Daily limit (200) exceeded',
  insufficient_balance_to_send_message: 'Account balance insufficient',
  message_backlog_limit_exceeded: 'Message backlog limit exceeded',
  max_queued_messages_exceeded: 'Too many queued messages',
  mms_expired_rejected_failed_or_unsupported: 'MMS expired, rejected, failed or unsupported',
};

/**
 * The short reason for an error code, or null when the code is unknown (or absent). A native
 * callback may carry a numeric code (SIGNALWIRE.md: which one it sends is uncertain): numbers
 * are SignalWire's compatibility codes whichever API reported them.
 */
export function errorReason(api: Api, code: string | null): string | null {
  if (code === null) return null;
  const table = api === 'native' && !/^\d+$/.test(code) ? NATIVE_REASONS : COMPATIBILITY_REASONS;
  // hasOwn: a code such as `constructor` must not match Object's own keys.
  return Object.hasOwn(table, code) ? table[code]! : null;
}
