import { randomUUID } from 'node:crypto';
import { inLockOrder } from '../src/messages/record-events.repository';
import type { BatchEvent } from '../src/messages/record-events.repository';
import { statusEvent } from '../test/factories';

/**
 * What the write path's lock-order sort costs the server (`inLockOrder`: a batch's events by
 * message id before they go out, so two replicas' batches never wait for each other in a
 * cycle): per batch and per event, for batch sizes of the benchmarks' 32 and 128 connections
 * and the largest batch. `npx tsx bench/lock-order-sort.ts`
 */

const BATCHES = 2_000;
const ROUNDS = 10;

for (const size of [8, 17, 200]) {
  const batches = Array.from({ length: BATCHES }, () =>
    Array.from(
      { length: size },
      () => ({ event: statusEvent('delivered', { messageId: randomUUID() }) }) as BatchEvent,
    ),
  );
  for (const batch of batches) inLockOrder(batch); // warm-up
  const started = process.hrtime.bigint();
  for (let round = 0; round < ROUNDS; round++) for (const batch of batches) inLockOrder(batch);
  const perBatchNs = Number(process.hrtime.bigint() - started) / (ROUNDS * BATCHES);
  console.log(
    `batch of ${size}: ${(perBatchNs / 1000).toFixed(2)} µs per batch, ${Math.round(perBatchNs / size)} ns per event`,
  );
}
