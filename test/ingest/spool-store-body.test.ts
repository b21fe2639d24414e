import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { normalizeCxmlCallback, normalizeNativeCallback } from '../../src/callbacks/normalize';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { runSpoolCommand } from './support/spool-command';

/**
 * STORE_BODY is read at start. Callbacks a run with it on spooled (PostgreSQL was away) are
 * replayed by the next run: restarted with STORE_BODY=false, that run stores no text, from
 * its spool either; nor does the operator's spool command, which reads STORE_BODY as the
 * service does.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let dir: string;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-body-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await database.destroy();
});

test('When a run with STORE_BODY=false replays callbacks a run with it on spooled, then no text is stored', async () => {
  const cxml = cxmlFields({ Body: 'my one-time code is 424242' });
  const nativeId = 'b1d4c3e2-0000-4000-8000-00000000abcd';
  const spooled = await openSpool({ dir, logger });
  await spooled.append([
    normalizeCxmlCallback(cxml, { receivedAt: new Date(), storeBody: true }),
    normalizeNativeCallback(
      {
        id: nativeId,
        project_id: 'd4e5f6a7-b8c9-4012-8ef0-34567890abcd',
        status: 'delivered',
        body: 'my one-time code is 424242',
        from: '+15551234567',
        to: '+15557654321',
      },
      { receivedAt: new Date(), storeBody: true },
    ),
  ]);
  await spooled.close();

  const spool = await openSpool({ dir, logger });
  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool,
    batchMax: 50,
    batchWaitMs: 1,
    queueMax: 100,
    maxInFlight: 2,
    storeBody: false,
  });
  recorder.start();
  try {
    await eventually(async () => {
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM status_events`.execute(database.db);
      return rows[0]!.n === 2;
    }, 'the spool replayed');
  } finally {
    await recorder.drain();
    await spool.close();
  }

  const { rows } = await sql<{ body: string | null; texts: number }>`
    SELECT m.body, (SELECT count(*)::int FROM status_events e WHERE e.message_id = m.id
                      AND e.raw::text LIKE '%424242%') AS texts
    FROM messages m WHERE m.id IN (${cxml.MessageSid}, ${nativeId}) ORDER BY m.id`.execute(
    database.db,
  );
  expect(rows).toEqual([
    { body: null, texts: 0 },
    { body: null, texts: 0 },
  ]);
});

describe('the spool command', () => {
  let orphaned: string;
  beforeEach(async () => {
    orphaned = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-body-cli-'));
  });
  afterEach(async () => {
    await rm(orphaned, { recursive: true, force: true });
  });

  /** Spools a callback carrying a text, as a run with STORE_BODY=true did; its MessageSid. */
  async function spoolTextOf(text: string): Promise<string> {
    const fields = cxmlFields({ Body: text });
    const spool = await openSpool({ dir: orphaned, logger });
    await spool.append([
      normalizeCxmlCallback(fields, { receivedAt: new Date(), storeBody: true }),
    ]);
    await spool.close();
    return fields.MessageSid!;
  }

  async function storedTexts(messageId: string, text: string): Promise<unknown> {
    const { rows } = await sql<{ body: string | null; texts: number }>`
      SELECT m.body, (SELECT count(*)::int FROM status_events e WHERE e.message_id = m.id
                        AND e.raw::text LIKE ${'%' + text + '%'}) AS texts
      FROM messages m WHERE m.id = ${messageId}`.execute(database.db);
    return rows;
  }

  test.each<Record<string, string>>([{}, { STORE_BODY: 'false' }, { STORE_BODY: '' }])(
    'When it replays texts a run with STORE_BODY on spooled, with %p, then no text is stored',
    async (env) => {
      const messageId = await spoolTextOf('my one-time code is 515151');

      const replay = await runSpoolCommand(['replay', orphaned], {
        DATABASE_URL: database.url,
        ...env,
      });

      expect(replay.stderr).toBe('');
      expect(replay.code).toBe(0);
      expect(await storedTexts(messageId, '515151')).toEqual([{ body: null, texts: 0 }]);
    },
  );

  test('When it replays with STORE_BODY=true, then the spooled text is stored', async () => {
    const messageId = await spoolTextOf('my one-time code is 626262');

    const replay = await runSpoolCommand(['replay', orphaned], {
      DATABASE_URL: database.url,
      STORE_BODY: 'true',
    });

    expect(replay.code).toBe(0);
    expect(await storedTexts(messageId, '626262')).toEqual([
      { body: 'my one-time code is 626262', texts: 1 },
    ]);
  });

  test('When STORE_BODY is malformed, then it replays nothing and names the variable', async () => {
    await spoolTextOf('my one-time code is 737373');

    const replay = await runSpoolCommand(['replay', orphaned], {
      DATABASE_URL: database.url,
      STORE_BODY: 'maybe',
    });

    expect(replay.code).toBe(1);
    expect(replay.stderr).toMatch(/STORE_BODY: /);
    expect(replay.stdout).toBe('');
  });
});
