import { randomUUID } from 'node:crypto';
import type { StatusEvent } from '../src/messages/status-event';
import { canonicalStatus } from '../src/messages/statuses';

/**
 * The projects the signed-callback builders (test/helpers/callbacks.ts) name by default: a
 * message's events all name its project (a callback naming another is refused:
 * record-events.ts refusedProjects), so events built here name the same one for their API.
 */
export const TEST_PROJECTS = {
  cxml: 'ea108133-d6b3-407c-9536-9fad8a929a6a',
  native: 'b2c3d4e5-f6a7-8901-bcde-f12345678901',
} as const;

/** A normalized status event as a callback would produce it; override what the test is about. */
export function statusEvent(rawStatus: string, overrides: Partial<StatusEvent> = {}): StatusEvent {
  return {
    messageId: randomUUID(),
    api: 'cxml',
    source: 'callback',
    projectId: TEST_PROJECTS[overrides.api ?? 'cxml'],
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
