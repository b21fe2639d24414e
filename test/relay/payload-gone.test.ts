import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * A pending relay whose callback is no longer kept (`payload` NULL: restored from a backup
 * taken as a delivered job's text was removed, edited by hand, or an older release's row) ends
 * dead at once, and the worker goes on. Such a job is refused without waiting on anything, so
 * its attempt finished inside the loop that started it; the loop started it again, and again,
 * until the stack overflowed and the replica died — and the next replica to claim it died too.
 */
jest.setTimeout(30_000);

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp();
  app = await t.customerApp();
});

afterAll(() => t.close());

test('When pending relays have no callback kept, then they end dead and the worker still sends the others', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/status'));
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    ids.push(id);
  }
  const [kept, ...gone] = ids as [string, ...string[]];
  await t.database.db
    .updateTable('relay_jobs')
    .set({ payload: null })
    .where('message_id', 'in', gone)
    .execute();

  t.startWorker({ tuning: { statsEveryMs: 50 } });

  const jobs = () =>
    t.database.db
      .selectFrom('relay_jobs')
      .select(['message_id', 'state', 'last_error'])
      .where('message_id', 'in', ids)
      .execute();
  await eventually(async () => (await jobs()).every((job) => job.state !== 'pending'), 20_000);
  const states = Object.fromEntries((await jobs()).map((job) => [job.message_id, job]));
  expect(states[kept]).toMatchObject({ state: 'delivered' });
  for (const id of gone) {
    expect(states[id]).toMatchObject({
      state: 'dead',
      last_error: 'the callback is no longer kept',
    });
  }
  expect(app.received.map((relay) => relay.messageId)).toEqual([kept]);
});
