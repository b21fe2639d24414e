// Edge cases of src/http/forwarded-for.ts: lastHops as the middleware applies it. Its only test
// (test/ops/forwarded-for-bound.test.ts, with an app and a database) let most mutants survive:
// e.g. keeping only the LAST hop (every client behind one proxy charged to that proxy's
// bucket) passed it. StrykerJS, 2026-12-07. Pure, no database.
import type { Request, Response } from 'express';
import { MAX_FORWARDED_HOPS, boundForwardedFor } from '../../src/http/forwarded-for';

function bounded(header: string | undefined): string | undefined {
  const req = { headers: header === undefined ? {} : { 'x-forwarded-for': header } } as Request;
  let called = 0;
  boundForwardedFor()(req, {} as Response, () => {
    called++;
  });
  expect(called).toBe(1);
  return req.headers['x-forwarded-for'] as string | undefined;
}

const hops = (n: number) => Array.from({ length: n }, (_, i) => `10.0.${i >> 8}.${i & 255}`);

describe('X-Forwarded-For bound (edge cases)', () => {
  test('When there is no X-Forwarded-For, then the request goes on without one', () => {
    expect(bounded(undefined)).toBeUndefined();
  });

  test('When a chain of real proxies forwards a client, then the header is left exactly as it came', () => {
    for (const header of [
      '198.51.100.7',
      '198.51.100.7, 10.1.2.3, 192.168.1.1',
      '198.51.100.7,10.1.2.3',
      ' 198.51.100.7 ,  10.1.2.3',
      ',10.1.2.3',
      ',',
      '',
      hops(MAX_FORWARDED_HOPS).join(', '),
    ]) {
      expect(bounded(header)).toBe(header);
    }
  });

  test('When the header has more than the hops nearest the service, then exactly the last of them are kept', () => {
    const all = hops(MAX_FORWARDED_HOPS + 1);
    expect(bounded(all.join(', '))).toBe(all.slice(1).join(', '));
    const many = hops(1_200);
    expect(bounded(many.join(','))).toBe(many.slice(-MAX_FORWARDED_HOPS).join(','));
    expect(bounded(`,${hops(MAX_FORWARDED_HOPS).join(',')}`)).toBe(
      hops(MAX_FORWARDED_HOPS).join(','),
    );
  });

  test('When the header starts with empty entries past the bound, then only the bound is kept', () => {
    const header = ','.repeat(40) + '10.0.0.1';
    expect(bounded(header)).toBe(','.repeat(MAX_FORWARDED_HOPS - 1) + '10.0.0.1');
  });
});
