import fsPromises from 'node:fs/promises';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { encodeSpoolLine } from '../../src/ingest/spool-codec';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';

/**
 * A segment's unreadable lines are dead-lettered one record at a time when the segment is
 * removed. When one of those writes fails (a full disk: dead letters are written whole or not
 * at all), the replay fails and the next pass — one per probe interval in the service — goes
 * over the segment again: the lines already kept must not be kept again, or each pass would
 * add a copy of them to dead-letters.jsonl and to the dead-letter count (metric, readiness)
 * for as long as the disk stays full. Like events (by dedupe key), each line is kept once (by
 * its segment, offset and text).
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-dead-letter-once-'));
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

/** The next `times` writes to the dead-letter file holding `marker` fail with ENOSPC. */
function diskFullFor(marker: string, times: number): void {
  let left = times;
  const deadLetterFile = path.join(dir, DEAD_LETTER_FILE);
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    if (path.resolve(String(args[0])) === deadLetterFile) {
      const write = handle.write.bind(handle) as (...a: unknown[]) => Promise<unknown>;
      handle.write = (async (...a: unknown[]) => {
        const data = a[0];
        if (left > 0 && Buffer.isBuffer(data) && data.includes(marker)) {
          left--;
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
            code: 'ENOSPC',
          });
        }
        return write(...a);
      }) as FileHandle['write'];
    }
    return handle;
  });
}

async function deadLetterLines(): Promise<string[]> {
  return (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { line: string }).line.slice(0, 19));
}

test('When dead-lettering a segment’s second unreadable line fails on a full disk for a few passes, then its first unreadable line is still kept once, not once per pass', async () => {
  const events = [event(), event()];
  const lines = [
    encodeSpoolLine(events[0]!),
    'first damaged line\n',
    encodeSpoolLine(events[1]!),
    `second damaged line ${'x'.repeat(10_000)}\n`,
  ];
  await writeFile(path.join(dir, `spool-${'1'.padStart(20, '0')}.jsonl`), lines.join(''));
  const spool = await openSpool({ dir, logger });
  diskFullFor('second damaged line', 3);

  for (let pass = 0; pass < 3; pass++) {
    await expect(spool.replay(async () => undefined, 10)).rejects.toMatchObject({
      code: 'ENOSPC',
    });
  }
  // Room again: the segment is replayed and removed.
  await spool.replay(async () => undefined, 10);
  expect(spool.isEmpty()).toBe(true);

  expect(await deadLetterLines()).toEqual(['first damaged line', 'second damaged line']);
  expect(spool.deadLetters()).toBe(2);
  await spool.close();
});

test('When a process restarts while a segment’s unreadable lines were being dead-lettered, then the lines already kept are not kept again', async () => {
  const lines = [
    encodeSpoolLine(event()),
    'first damaged line\n',
    `second damaged line ${'x'.repeat(100)}\n`,
  ];
  await writeFile(path.join(dir, `spool-${'1'.padStart(20, '0')}.jsonl`), lines.join(''));
  const first = await openSpool({ dir, logger });
  diskFullFor('second damaged line', 1);
  await expect(first.replay(async () => undefined, 10)).rejects.toMatchObject({ code: 'ENOSPC' });
  await first.close();

  const second = await openSpool({ dir, logger });
  await second.replay(async () => undefined, 10);
  expect(second.isEmpty()).toBe(true);
  expect(await deadLetterLines()).toEqual(['first damaged line', 'second damaged line']);
  expect(second.deadLetters()).toBe(2);
  await second.close();
});
