import { sql } from 'kysely';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A redacted message (its body `''`) shows `body: ""` with STORE_BODY=true and no `body`
 * without it (message-dto.ts). A restart that flips STORE_BODY changes the answer for the
 * same rows, so the ETag must change with it: a dashboard revalidating what the run before
 * the restart answered would otherwise get a 304 and keep showing the old shape.
 */

let storing: TestApp;
let notStoring: TestApp;
let id: string;

beforeAll(async () => {
  storing = await createTestApp({ STORE_BODY: 'true' });
  // The same database, as the replica after a restart with STORE_BODY flipped.
  notStoring = await createTestApp({ STORE_BODY: 'false' }, { database: storing.database });
  const event = statusEvent('queued', { to: '+15557403001' });
  id = event.messageId;
  await recordEvents(storing.database.db, [event]);
  // As a redaction leaves it (src/messages/redaction.ts).
  await sql`UPDATE messages SET body = '' WHERE id = ${id}`.execute(storing.database.db);
});

afterAll(async () => {
  await notStoring.close();
  await storing.close();
});

/** The part of a message's answer this file looks at. */
type Shown = { id: string; body?: string };

const auth = { Authorization: `Bearer ${TEST_API_TOKEN}` };

test.each([
  ['/v1/messages/:id', () => `/v1/messages/${id}`, (body: Shown) => body],
  [
    '/v1/messages',
    () => '/v1/messages?to=%2B15557403001',
    (body: { data: Shown[] }) => body.data[0],
  ],
])(
  'When STORE_BODY is flipped between two answers of %s for a redacted message, then the ETag differs and the revalidation gets the new answer, not a 304',
  async (_route, path, message) => {
    const before = await request(storing.internalApp).get(path()).set(auth).expect(200);
    expect(message(before.body)).toMatchObject({ id, body: '' });

    const after = await request(notStoring.internalApp)
      .get(path())
      .set(auth)
      .set('If-None-Match', before.headers.etag!);
    expect(after.status).toBe(200);
    expect(message(after.body)).toMatchObject({ id });
    expect(message(after.body)).not.toHaveProperty('body');
    expect(after.headers.etag).not.toBe(before.headers.etag);

    // Unflipped, the same answer still revalidates to a 304.
    await request(storing.internalApp)
      .get(path())
      .set(auth)
      .set('If-None-Match', before.headers.etag!)
      .expect(304);
  },
);
