import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The production image has no npm (Dockerfile: `rm -rf … /usr/local/bin/npm`), so every CLI the
 * README tells operators to run against a production database needs its image form,
 * `node dist/<entry>.js`, written down beside `npm run …` (`kubectl exec … -- npm …` fails with
 * "executable file not found").
 */
const ROOT = path.resolve(__dirname, '..', '..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const scripts = (
  JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  }
).scripts;

/** `node --import tsx src/x.ts` → `node dist/x.js`. */
function imageForm(script: string): string {
  const [, entry] = /^node --import tsx src\/(\S+)\.ts$/.exec(scripts[script] ?? '') ?? [];
  if (!entry) throw new Error(`${script}: not a "node --import tsx src/…" script`);
  return `node dist/${entry}.js`;
}

test.each(['migrate', 'spool', 'stats:rebuild', 'feed:reset'])(
  'When the README tells operators to run `npm run %s` on production data, then it also gives the command the npm-less image runs',
  (script) => {
    expect(readme).toContain(`npm run ${script}`);
    expect({ script, documented: readme.includes(imageForm(script)) }).toEqual({
      script,
      documented: true,
    });
  },
);
