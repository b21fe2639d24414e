/**
 * The error reasons' tables (error-reasons.ts says how they are read). Data only: a release that
 * changes a line here changes the version every answer showing a reason is tagged with.
 */

/** SignalWire's numeric codes (signalwire.com/docs/compatibility-api/rest/error-codes). */
export const COMPATIBILITY: Readonly<Record<string, string>> = {
  '21610': 'Blocked by the recipient, or sent from a blacklisted number',
  '21611': "'From' has exceeded its queue of messages",
  '21614': "'To' is not a valid mobile number",
  '30001': 'Validity period exceeded before the message could be sent',
  '30002': 'Account balance insufficient',
  '30003': 'Destination handset unreachable',
  '30004': 'Blocked by the destination carrier',
  '30005': 'Destination handset unknown',
  '30006': 'Could not be routed to the destination handset',
  '30007': 'Flagged as a carrier violation (filtered content)',
  '30008': 'Unknown upstream error',
  '30009': 'Validity period expired at the carrier',
  '30010': 'Maximum price exceeded',
  '30011': 'MMS expired, rejected or unsupported',
  '30012': 'MMS could not be sent',
  '30022': 'A2P 10DLC rate limit exceeded',
  '30027': 'T-Mobile daily limit reached (A2P 10DLC)',
  '63011': 'Not delivered to the carrier',
  '63019': 'Media download failed',
};

/** SignalWire's native string codes (signalwire.com/docs/apis/error-codes), delivery-relevant. */
export const NATIVE: Readonly<Record<string, string>> = {
  unreachable_destination_handset:
    'Destination handset unreachable (busy, offline, not SMS-capable or storage full; often temporary)',
  unknown_destination_handset: 'Destination number unknown or unreachable',
  carrier_violation: 'Flagged as spam by the carrier',
  message_filtered: "Blocked by SignalWire's spam filter",
  message_blocked_by_carrier: 'Blocked by the carrier (e.g. the recipient opted out)',
  message_blocked_by_number: 'The destination number blocks this sender',
  message_validity_period_expired_at_carrier: 'Validity period expired at the carrier',
  rejected_by_receiving_carrier_for_unspecified_reason:
    'Rejected by the receiving carrier, no reason given',
  unable_to_deliver_to_carrier: 'Could not be handed to the carrier',
  unknown_error: 'Unknown carrier error',
  not_routable: 'No route to the destination',
  unrouteable_message: 'No route to the destination',
  associated_campaign_inactive: 'The 10DLC campaign is inactive',
  associated_campaign_suspended: 'The 10DLC campaign is suspended',
  campaign_throughput_exceeded: 'Campaign throughput exceeded',
  tmobile_daily_limit_reached: 'T-Mobile daily limit reached',
  sole_proprietor_daily_limit_exceeded: 'Sole-proprietor daily limit exceeded (1,000)',
  pft_daily_limit_exceeded: 'Daily limit exceeded (200)',
  insufficient_balance_to_send_message: 'Account balance insufficient',
  message_backlog_limit_exceeded: 'Message backlog limit exceeded',
  max_queued_messages_exceeded: 'Too many queued messages',
  mms_expired_rejected_failed_or_unsupported: 'MMS expired, rejected, failed or unsupported',
};
