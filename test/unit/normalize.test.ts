import { execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  normalizeCxmlCallback,
  normalizeNativeCallback,
  providerTimestamp,
} from '../../src/callbacks/normalize';
import { AppError } from '../../src/errors';

const options = { receivedAt: new Date('2026-11-23T00:00:00Z'), storeBody: false };

describe('normalizeCxmlCallback', () => {
  test('When the documented example arrives, then every field is mapped and Body is dropped', () => {
    const fields = Object.fromEntries(
      new URLSearchParams(
        'MessageSid=0a059168-ead0-41af-9d1f-343dae832527&MessageStatus=undelivered&ErrorCode=30003&AccountSid=ea108133-d6b3-407c-9536-9fad8a929a6a&From=%2B15551234567&To=%2B15557654321&Body=Hello&NumMedia=0&NumSegments=1',
      ),
    );
    const event = normalizeCxmlCallback(fields, options);
    expect(event).toMatchObject({
      messageId: '0a059168-ead0-41af-9d1f-343dae832527',
      api: 'cxml',
      status: 'undelivered',
      rawStatus: 'undelivered',
      errorCode: '30003',
      projectId: 'ea108133-d6b3-407c-9536-9fad8a929a6a',
      from: '+15551234567',
      to: '+15557654321',
      numMedia: 0,
      numSegments: 1,
      providerTimestamp: null,
    });
    expect(event.raw).not.toHaveProperty('Body');
    expect(event.raw).toHaveProperty('ErrorCode', '30003');
  });

  test('When STORE_BODY is on, then the raw payload keeps Body', () => {
    const event = normalizeCxmlCallback(
      { MessageSid: 'abc', MessageStatus: 'sent', Body: 'hi' },
      { ...options, storeBody: true },
    );
    expect(event.raw).toHaveProperty('Body', 'hi');
  });

  test('When only the legacy SmsSid/SmsStatus names are sent, then they are used', () => {
    expect(normalizeCxmlCallback({ SmsSid: 'abc', SmsStatus: 'sent' }, options)).toMatchObject({
      messageId: 'abc',
      status: 'sent',
    });
  });

  test('When MessageSid or MessageStatus is missing, then it is a 400 naming them', () => {
    expect(() => normalizeCxmlCallback({ MessageStatus: 'sent' }, options)).toThrow(AppError);
    try {
      normalizeCxmlCallback({}, options);
    } catch (error) {
      expect(error).toMatchObject({ status: 400, code: 'missing_field' });
      expect((error as Error).message).toContain('MessageSid');
      expect((error as Error).message).toContain('MessageStatus');
    }
  });

  test('When the id is not an id, then it is a 400', () => {
    expect(() =>
      normalizeCxmlCallback({ MessageSid: '../../etc', MessageStatus: 'sent' }, options),
    ).toThrow(expect.objectContaining({ status: 400 }));
  });
});

describe('normalizeNativeCallback', () => {
  test('When the documented example arrives, then it maps with its timestamp', () => {
    const event = normalizeNativeCallback(
      {
        id: 'a1b2c3d4-e5f6-7890-abcd-ef1234567890',
        project_id: 'b2c3d4e5-f6a7-8901-bcde-f12345678901',
        status: 'delivered',
        to: '+15551234567',
        from: '+15559876543',
        body: 'Hello World!',
        number_of_segments: 1,
        timestamp: '2026-03-17T22:26:57Z',
        error_code: null,
        error_message: null,
        custom_variables: { id: '12345' },
      },
      options,
    );
    expect(event).toMatchObject({
      api: 'native',
      status: 'delivered',
      numSegments: 1,
      errorCode: null,
      providerTimestamp: new Date('2026-03-17T22:26:57Z'),
    });
    expect(event.raw).not.toHaveProperty('body');
    expect(event.raw).toHaveProperty('custom_variables', { id: '12345' });
  });

  test('When an error code is a number, then it is stored as text', () => {
    expect(
      normalizeNativeCallback({ id: 'abc', status: 'failed', error_code: 30008 }, options)
        .errorCode,
    ).toBe('30008');
  });

  test('When the status has a wrong type, then it is a 400', () => {
    expect(() => normalizeNativeCallback({ id: 'abc', status: 42 }, options)).toThrow(
      expect.objectContaining({ status: 400 }),
    );
  });
});

describe('provider timestamps', () => {
  const native = (timestamp: unknown) =>
    normalizeNativeCallback(
      { id: 'a1b2c3d4-e5f6-7890-abcd-ef1234567890', status: 'delivered', timestamp },
      options,
    ).providerTimestamp?.toISOString() ?? null;

  test('When a native timestamp is ISO 8601, then it is that instant, UTC when it has no offset', () => {
    expect(native('2026-03-17T22:26:57Z')).toBe('2026-03-17T22:26:57.000Z');
    expect(native('2026-03-17T22:26:57')).toBe('2026-03-17T22:26:57.000Z');
    expect(native('2026-03-17 22:26:57.123456z')).toBe('2026-03-17T22:26:57.123Z');
    expect(native('2026-03-17T22:26')).toBe('2026-03-17T22:26:00.000Z');
    expect(native('2026-03-17T23:26:57+01:00')).toBe('2026-03-17T22:26:57.000Z');
    expect(native('2026-03-17T17:26:57-0500')).toBe('2026-03-17T22:26:57.000Z');
    expect(native('2026-03-18T03:56:57+05:30')).toBe('2026-03-17T22:26:57.000Z');
    expect(native('2026-03-18T00:26:57+02')).toBe('2026-03-17T22:26:57.000Z');
  });

  test('When a native timestamp is not an ISO 8601 date-time, then the event has none', () => {
    for (const junk of [
      '0',
      0,
      1773786417,
      'now',
      '2026-03-17',
      'Tue, 17 Mar 2026 22:26:57 +0000',
      '2026-02-30T10:00:00Z',
      '2026-03-17T24:00:00Z',
      '2026-03-17T23:59:60Z',
      '2026-03-17T22:26:57+25:00',
      '0000-01-01T00:00:00Z',
      '+275760-09-13T00:00:00.000Z',
      '9999-12-31T23:30:00-01:00',
      '2026-03-17T22:26:57Z trailing',
      { at: '2026-03-17T22:26:57Z' },
    ]) {
      expect([junk, native(junk)]).toEqual([junk, null]);
    }
  });

  test('When a native timestamp has no offset, then it is read as UTC whatever the server time zone', () => {
    // jest gives each test file its own copy of process.env, so TZ cannot be changed in here:
    // the normalizer runs in a process of its own, in a zone west and one east of UTC.
    const root = path.resolve(__dirname, '../..');
    const script = `
      import { normalizeNativeCallback } from './src/callbacks/normalize';
      const at = normalizeNativeCallback(
        { id: 'a1b2c3d4-e5f6-7890-abcd-ef1234567890', status: 'delivered', timestamp: '2026-03-17T22:26:57' },
        { receivedAt: new Date(), storeBody: false },
      ).providerTimestamp;
      process.stdout.write(String(at?.toISOString()));`;
    for (const zone of ['America/New_York', 'Asia/Kolkata']) {
      const output = execFileSync(path.join(root, 'node_modules/.bin/tsx'), ['-e', script], {
        cwd: root,
        env: { ...process.env, TZ: zone },
      }).toString();
      expect([zone, output]).toEqual([zone, '2026-03-17T22:26:57.000Z']);
    }
  });

  test('When a send’s answer dates it, then native ISO 8601 and compatibility RFC 2822 both read', () => {
    // Seed 004's date_created, and what the simulator writes.
    expect(providerTimestamp('Mon, 13 Aug 2018 21:38:46 +0000')).toEqual(
      new Date('2018-08-13T21:38:46Z'),
    );
    expect(providerTimestamp('Tue, 17 Mar 2026 17:26:57 -0500')).toEqual(
      new Date('2026-03-17T22:26:57Z'),
    );
    expect(providerTimestamp('17 Mar 2026 22:26:57 GMT')).toEqual(new Date('2026-03-17T22:26:57Z'));
    expect(providerTimestamp('2026-02-25T15:30:00Z')).toEqual(new Date('2026-02-25T15:30:00Z'));
    // RFC 2822 names its zone: a date without one could only be read in the server's.
    expect(providerTimestamp('Tue, 17 Mar 2026 22:26:57')).toBeNull();
    expect(providerTimestamp('Tue, 31 Feb 2026 22:26:57 +0000')).toBeNull();
    expect(providerTimestamp('0')).toBeNull();
  });
});
