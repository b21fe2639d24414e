import type { RecordOutcome } from '../messages/record-events';

/**
 * What became of a callback: recorded, or a duplicate (messages/record-events), or refused and
 * why. Its own module so that metrics/ can name it without importing the routes (which import
 * http/rate-limit, which imports metrics/).
 */
export type CallbackOutcome = RecordOutcome | `refused_${string}`;
