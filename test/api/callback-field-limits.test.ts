import { randomBytes } from 'node:crypto';
import { directRecorder } from '../../src/messages/event-recorder';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * `to`, `from`, `error_code` and `project_id` are keys of the messages table's btree indexes, whose entries
 * PostgreSQL caps at about 2.7 kB (SQLSTATE 54000 past it). A callback carrying a longer one
 * could never be stored: it is malformed (400), not a reason for SignalWire to retry (503).
 */

// Random bytes do not compress: 6 000 characters make an index entry over the cap.
const tooLong = (): string => randomBytes(4500).toString('base64url');

describe('the limits of indexed fields', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  test.each(['To', 'From', 'ErrorCode', 'AccountSid'])(
    'When a cXML callback carries a 6 000-character %s, then it is a 400 naming the field',
    async (field) => {
      const res = await postCxml(t.publicApp, cxmlFields({ [field]: tooLong() }));
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_field' });
      expect(res.body.error.details).toEqual([{ path: field, message: 'At most 256 characters' }]);
    },
  );

  test.each(['to', 'from', 'error_code', 'project_id'])(
    'When a native callback carries a 6 000-character %s, then it is a 400',
    async (field) => {
      const res = await postNative(
        t.publicApp,
        nativeFields({ status: 'failed', [field]: tooLong() }),
      );
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_field' });
    },
  );

  test('When a field is exactly 256 characters, then the callback is stored', async () => {
    const res = await postCxml(t.publicApp, cxmlFields({ To: 'x'.repeat(256) }));
    expect(res.status).toBe(200);
  });
});

test('When PostgreSQL itself refuses a value of a callback, then the answer is a 400, not a 503 retried in vain', async () => {
  // Past every check of the edge (here: a recorder that lengthens `to` on the way in), the
  // database's own refusal (54000) still makes a 400.
  const t = await createTestApp(
    {},
    {
      recorder: (_deps, database) => {
        const direct = directRecorder(database.db);
        return { ...direct, record: (event) => direct.record({ ...event, to: tooLong() }) };
      },
    },
  );
  try {
    const res = await postCxml(t.publicApp, cxmlFields());
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_field' });
  } finally {
    await t.close();
  }
});
