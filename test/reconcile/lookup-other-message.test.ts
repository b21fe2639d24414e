import { randomUUID } from 'node:crypto';
import { recordEvents } from '../../src/messages/record-events';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import { lookupEvent, unusableAnswer } from '../../src/reconcile/lookup-event';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually, seedProxiedMessage } from '../relay/support';
import { startTestSweep } from './support';

/**
 * A lookup's answer names the message it is about (`sid`, native `id`). One naming another
 * message — a caching or misrouting gateway in front of SignalWire — was recorded on ours: the
 * other message's outcome became this one's, was relayed to the app as this one's, and its
 * `account_sid`/`project_id` moved the message into another project (one without credentials
 * here: never swept again). Such an answer is unusable, counted as its step; and the project
 * of a message is never taken from an answer.
 */

let database: TestDatabase;
let sweep: ReconcileWorker | undefined;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
});

afterAll(() => database.destroy());

const state = (id: string) =>
  database.db
    .selectFrom('messages')
    .select(['status', 'error_code', 'project_id', 'sweep_step', 'stuck', 'sweep_error'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

const relayJobs = async (id: string) =>
  (await database.db.selectFrom('relay_jobs').select('id').where('message_id', '=', id).execute())
    .length;

test.each(['cxml', 'native'] as const)(
  'When a lookup (%s) answers with another message’s resource, then nothing of it is recorded or relayed, the message stays in its project, and the answer counts as a failed step',
  async (api) => {
    const id = await seedProxiedMessage(
      database.db,
      api,
      'http://127.0.0.1:9/app-status',
      randomUUID(),
      'p1',
    );
    const relaysBefore = await relayJobs(id);
    const other = randomUUID();
    let looked = 0;
    sweep = startTestSweep({
      db: database.db,
      lookup: {
        async lookup(): Promise<LookupResult> {
          looked++;
          return {
            kind: 'found',
            answer: {
              ...(api === 'cxml'
                ? { sid: other, account_sid: 'p-someone-else' }
                : { id: other, project_id: 'p-someone-else' }),
              status: 'undelivered',
              error_code: '30007',
            },
          };
        },
      },
      projects: ['p1'],
    });
    const after = await eventually(async () => {
      const row = await state(id);
      return row.stuck && row;
    }, 8_000);
    expect(after).toEqual({
      status: 'queued',
      error_code: null,
      project_id: 'p1',
      sweep_step: 2,
      stuck: true,
      sweep_error: 'the answer is about another message',
    });
    expect(looked).toBe(2);
    expect(await relayJobs(id)).toBe(relaysBefore);
  },
);

test('When the answer is about this message but names another project, then what it says is recorded and the message keeps its own project', async () => {
  const id = randomUUID();
  await recordEvents(database.db, [
    statusEvent('sent', {
      messageId: id,
      api: 'native',
      projectId: 'p1',
      receivedAt: new Date(Date.now() - 60_000),
    }),
  ]);
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      lookup: async (): Promise<LookupResult> => ({
        kind: 'found',
        answer: { id, project_id: 'p-someone-else', status: 'delivered' },
      }),
    },
    projects: ['p1'],
  });
  const after = await eventually(async () => {
    const row = await state(id);
    return row.status === 'delivered' && row;
  }, 8_000);
  expect(after.project_id).toBe('p1');
});

describe('which answers a message can take (pure)', () => {
  const message = {
    id: 'ab12cd34-0000-4000-8000-000000000001',
    api: 'cxml' as const,
    projectId: 'p1',
    status: 'sent',
    errorCode: null,
  };
  const at = new Date('2026-03-17T22:26:57.000Z');

  test('When the answer names this message (in any case) or none, then it is usable', () => {
    expect(unusableAnswer(message, { sid: message.id, status: 'delivered' })).toBeNull();
    expect(unusableAnswer(message, { sid: message.id.toUpperCase() })).toBeNull();
    expect(unusableAnswer(message, { status: 'delivered' })).toBeNull();
    // A native message's log entry is named by `id`; a compatibility resource's `id` is no name.
    expect(unusableAnswer({ ...message, api: 'native' }, { id: message.id })).toBeNull();
    expect(unusableAnswer(message, { id: 'something', sid: message.id })).toBeNull();
  });

  test('When the answer names another message, then it is unusable and no event is built from it', () => {
    const answer = { sid: 'SMother', account_sid: 'p2', status: 'delivered' };
    expect(unusableAnswer(message, answer)).toBe('the answer is about another message');
    expect(unusableAnswer(message, { sid: 42, status: 'delivered' })).toBe(
      'the answer is about another message',
    );
    expect(lookupEvent(message, answer, at, false)).toBeNull();
  });

  test('When a usable answer names another project, then the event and its relayed callback carry the message’s own', () => {
    const event = lookupEvent(
      message,
      { sid: message.id, account_sid: 'p2', status: 'delivered' },
      at,
      false,
    );
    expect(event?.projectId).toBe('p1');
    const form = new URLSearchParams(Buffer.from(event!.relay!.body, 'base64').toString());
    expect(form.get('AccountSid')).toBe('p1');
  });
});
