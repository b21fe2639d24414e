import { connectionsWithinFileLimit, openFileLimit } from '../../src/process/open-file-limit';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('openFileLimit', () => {
  test('When /proc/self/limits is read, then the soft limit on open files comes back', () => {
    expect(openFileLimit(() => LIMITS)).toBe(1024);
  });

  test('When this process runs on Linux, then its own limit is read', () => {
    expect(openFileLimit()).toBeGreaterThan(0);
  });

  test.each([
    [
      'there is no such file (not Linux)',
      () => {
        throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      },
    ],
    ['the limit is unlimited', () => LIMITS.replace('1024 ', 'unlimited ')],
    ['the line is missing', () => 'Limit Soft Limit Hard Limit Units\n'],
  ])('When %s, then there is no limit to fit in', (_what, read) => {
    expect(openFileLimit(read)).toBeUndefined();
  });
});

describe('connectionsWithinFileLimit', () => {
  test('When the limit is far above both listeners (Kubernetes: 1 048 576), then HTTP_MAX_CONNECTIONS stands', () => {
    expect(connectionsWithinFileLimit(4096, 1_048_576, 10)).toBe(4096);
  });

  test.each([1024, 4096, 8192, 10_000])(
    'When the limit is %i, then both listeners at their bound leave room for pools and files',
    (limit) => {
      const each = connectionsWithinFileLimit(4096, limit, 10);
      expect(each).toBeLessThanOrEqual(4096);
      expect(2 * each + 2 * 10 + 64).toBeLessThanOrEqual(limit);
    },
  );

  test('When the limit is tiny, then each listener still takes a few connections', () => {
    expect(connectionsWithinFileLimit(4096, 50, 10)).toBe(16);
  });

  test('When there is no limit to read, then HTTP_MAX_CONNECTIONS stands', () => {
    expect(connectionsWithinFileLimit(4096, undefined, 10)).toBe(4096);
  });
});
