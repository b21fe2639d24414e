import { randomUUID } from 'node:crypto';
import type { StatusEvent } from '../src/messages/status-event';
import { canonicalStatus } from '../src/messages/statuses';

/** A normalized status event as a callback would produce it; override what the test is about. */
export function statusEvent(rawStatus: string, overrides: Partial<StatusEvent> = {}): StatusEvent {
  return {
    messageId: randomUUID(),
    api: 'cxml',
    source: 'callback',
    projectId: 'p1',
    status: canonicalStatus(rawStatus),
    rawStatus,
    errorCode: null,
    errorMessage: null,
    from: '+15550000001',
    to: '+15550000002',
    numSegments: 1,
    numMedia: 0,
    providerTimestamp: null,
    receivedAt: new Date(),
    raw: {},
    ...overrides,
  };
}
