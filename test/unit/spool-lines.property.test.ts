import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { countLines, readLines } from '../../src/ingest/spool-lines';
import type { SpoolLine } from '../../src/ingest/spool-lines';

/**
 * The spool's line reader (src/ingest/spool-lines.ts) against splitting the whole file, with
 * reads small enough that lines span many of them and a multi-byte character is cut between
 * two: the same complete lines at the same offsets, a torn last line left out, and no text
 * for a line longer than the limit.
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-lines-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const line = fc.string({
  unit: fc.constantFrom('a', '{', '"', 'é', '€', '𝄞', '\r'),
  maxLength: 40,
});

test('When a file is read a line at a time, then it yields exactly its complete lines, where they are', async () => {
  const file = path.join(dir, 'segment.jsonl');
  await fc.assert(
    fc.asyncProperty(
      fc.array(line, { maxLength: 12 }),
      fc.option(line, { nil: undefined }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 0, max: 80 }),
      async (lines, torn, readBytes, maxLineBytes) => {
        const content = lines.map((text) => `${text}\n`).join('') + (torn ?? '');
        await writeFile(file, content);

        const expected: SpoolLine[] = [];
        let offset = 0;
        for (const text of lines) {
          const bytes = Buffer.byteLength(text);
          expected.push({ offset, bytes, text: bytes <= maxLineBytes ? text : undefined });
          offset += bytes + 1;
        }
        const read: SpoolLine[] = [];
        for await (const found of readLines(file, maxLineBytes, readBytes)) read.push(found);
        expect(read).toEqual(expected);
        expect(await countLines(file)).toBe(lines.length);
      },
    ),
    { numRuns: 200 },
  );
  // Well under a second alone; each run reads its file a few bytes at a time, a thousand file
  // reads on a loaded machine's thread pool (one CI run took past the default 30 s).
}, 120_000);
