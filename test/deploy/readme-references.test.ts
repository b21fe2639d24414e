import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Manifests, log lines and docs send operators to a part of the README by name
 * (`README "Spool commands"`). Each such name must still be there after the README is
 * rewritten: a heading (in full, or up to its colon: "The outage spool" for "The outage spool:
 * what survives what") or a paragraph's or list item's bold lead (`**Relay.**`).
 */
const ROOT = path.resolve(__dirname, '../..');
const SEARCHED = ['k8s', 'src', 'docs', 'scripts', 'examples', 'Dockerfile'];

function filesUnder(entry: string): string[] {
  const full = path.join(ROOT, entry);
  if (!statSync(full).isDirectory()) return [full];
  return readdirSync(full, { recursive: true, encoding: 'utf8' })
    .map((name) => path.join(full, name))
    .filter((file) => statSync(file).isFile() && !file.endsWith('.json'));
}

/** What a reference may name: every heading, its part before a colon, every bold lead. */
function readmeAnchors(): Set<string> {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of readme.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) continue;
    const heading = /^#{1,6} (.+)$/.exec(line);
    if (heading) {
      anchors.add(heading[1]!);
      anchors.add(heading[1]!.split(':')[0]!);
    }
    const lead = /^(?:- )?\*\*([^*]+)\.\*\*/.exec(line);
    if (lead) anchors.add(lead[1]!);
  }
  return anchors;
}

describe('references to the README by name', () => {
  const anchors = readmeAnchors();
  const references = SEARCHED.flatMap(filesUnder).flatMap((file) =>
    // A comment may wrap a long name over two lines (`#`, `//` or ` *` before the rest).
    [
      ...readFileSync(file, 'utf8')
        .replace(/\n\s*(?:#|\/\/|\*)\s*/g, ' ')
        .matchAll(/README "([^"]+)"/g),
    ].map((match) => ({ file: path.relative(ROOT, file), name: match[1]! })),
  );

  it('finds the references it checks', () => {
    // The manifests alone name a dozen sections; finding none would mean the search broke.
    expect(references.length).toBeGreaterThan(10);
  });

  it('names only sections the README has', () => {
    const missing = references.filter(({ name }) => !anchors.has(name));
    expect(missing).toEqual([]);
  });
});
