import v8 from 'node:v8';
import vm from 'node:vm';
import { normalizeNativeCallback } from '../../src/callbacks/normalize';
import { approximateEventBytes } from '../../src/ingest/event-size';
import type { StatusEvent } from '../../src/messages/status-event';
import { nativeFields } from '../helpers/callbacks';

/**
 * INGEST_QUEUE_MAX_BYTES bounds the memory of waiting callbacks by approximateEventBytes
 * (DESIGN §2: "bounded in bytes, not only in count"), so the estimate must follow what V8
 * really holds, whatever shape a 64 KiB body parses to. Measured here on the heap itself:
 * copies of each event are kept alive between two full collections.
 */

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function heapPerEvent(make: () => StatusEvent, copies: number): number {
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept: StatusEvent[] = [];
  for (let i = 0; i < copies; i++) kept.push(make());
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  expect(kept).toHaveLength(copies); // kept alive until measured
  return (after - before) / copies;
}

function nativeEvent(body: string): StatusEvent {
  return normalizeNativeCallback(JSON.parse(body) as Record<string, unknown>, {
    receivedAt: new Date(),
    storeBody: false,
  });
}

const wrap = (items: string): string => `{"id":"a1b2c3d4","status":"sent","x":${items}}`;

test.each([
  ['16,000 empty objects', wrap(`[${Array(16_000).fill('{}').join(',')}]`)],
  ['21,000 empty arrays', wrap(`[${Array(21_000).fill('[]').join(',')}]`)],
  [
    '6,000 keys',
    `{"id":"a1b2c3d4","status":"sent",${Array.from({ length: 6_000 }, (_, i) => `"k${i}":0`).join(',')}}`,
  ],
])(
  'When a body of %s is waiting, then its estimate is not far below the heap it holds',
  (_shape, body) => {
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(64 * 1024);
    const estimate = approximateEventBytes(nativeEvent(body));
    const held = heapPerEvent(() => nativeEvent(body), 40);
    // Before: 48 KB of `{},` (1 MB on the heap) counted as 128 KB — eight callbacks in the
    // space of one.
    expect(estimate).toBeGreaterThanOrEqual(0.7 * held);
  },
);

test('When an ordinary callback is waiting, then its estimate is close to the heap it holds', () => {
  const body = JSON.stringify(nativeFields({ custom_variables: { id: '12345' } }));
  // A fresh parse per copy, as each callback is; the relay's copy of the body too.
  const make = (): StatusEvent => {
    const event = nativeEvent(`${body}${' '.repeat(Math.floor(Math.random() * 8))}`);
    event.relay = {
      method: 'POST',
      contentType: 'application/json',
      body: Buffer.from(body).toString('base64'),
      keyRef: null,
    };
    return event;
  };
  const estimate = approximateEventBytes(make());
  const held = heapPerEvent(make, 5_000);
  expect(estimate).toBeGreaterThanOrEqual(0.5 * held);
  expect(estimate).toBeLessThanOrEqual(2 * held);
});
