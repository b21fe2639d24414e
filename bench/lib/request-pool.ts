import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { signFormParams } from '../../src/signalwire/signing';

export const BENCH_SIGNING_KEY = 'PSK_sw_status_bench_signing_key_0123';
export const BENCH_PUBLIC_BASE_URL = 'https://hooks.bench.example';
export const CALLBACK_PATH = '/callbacks/cxml';

/**
 * A file of pre-signed cXML status callbacks, one per line: `signature<TAB>body`. Every line
 * has its own MessageSid, so no request is a duplicate of another (duplicates take a cheaper
 * path through the store). Signed for PUBLIC_BASE_URL + path, exactly as SignalWire signs.
 */
export async function writeRequestPool(file: string, count: number): Promise<void> {
  const out = createWriteStream(file);
  const url = BENCH_PUBLIC_BASE_URL + CALLBACK_PATH;
  for (let i = 0; i < count; i++) {
    const fields: Array<[string, string]> = [
      ['MessageSid', randomUUID()],
      ['MessageStatus', 'delivered'],
      ['AccountSid', 'ea108133-d6b3-407c-9536-9fad8a929a6a'],
      ['From', '+15551234567'],
      ['To', `+1555${String(1_000_000 + (i % 9_000_000)).padStart(7, '0')}`],
      ['Body', 'Your verification code is 123456'],
      ['NumMedia', '0'],
      ['NumSegments', '1'],
    ];
    const line = `${signFormParams(BENCH_SIGNING_KEY, url, fields)}\t${new URLSearchParams(fields).toString()}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}
