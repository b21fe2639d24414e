import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// What a walk in order=activity (the default) does with a message that changes during it: the
// message moves to the front, behind the walk — one already returned is not returned again, one
// not yet reached is not returned at all. order=created returns both, once.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

async function walk(query: string, during: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  let first = true;
  do {
    const path: string = `/v1/messages?${query}&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await get(path).expect(200);
    seen.push(...res.body.data.map((m: { id: string }) => m.id));
    cursor = res.body.next_cursor;
    if (first) await during();
    first = false;
  } while (cursor);
  return seen;
}

test('When a message not yet reached changes during an activity walk, then the walk does not return it; a created walk does, once', async () => {
  const from = '+15554440001';
  const ids = Array.from({ length: 6 }, () => randomUUID());
  const base = Date.parse('2026-07-01T00:00:00Z');
  // Newest first: ids[5] … ids[0]; the walk's first page is ids[5], ids[4].
  await recordEvents(
    t.database.db,
    ids.map((id, k) =>
      statusEvent('sent', { messageId: id, from, receivedAt: new Date(base + k) }),
    ),
  );
  const changeOldest = async () => {
    await recordEvents(t.database.db, [
      statusEvent('delivered', { messageId: ids[0], from, receivedAt: new Date(base + 60_000) }),
    ]);
  };
  const byActivity = await walk(`from=%2B15554440001`, changeOldest);
  expect(byActivity).toEqual([ids[5], ids[4], ids[3], ids[2], ids[1]]);

  const later = async () => {
    await recordEvents(t.database.db, [
      statusEvent('failed', { messageId: ids[1], from, receivedAt: new Date(base + 120_000) }),
    ]);
  };
  const byCreated = await walk(`from=%2B15554440001&order=created`, later);
  expect(byCreated).toEqual([ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]);
});
