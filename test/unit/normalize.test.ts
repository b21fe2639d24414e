import { normalizeCxmlCallback, normalizeNativeCallback } from '../../src/callbacks/normalize';
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
