import path from 'node:path';
import { build } from 'esbuild';
import { pageHtml } from './page-html';
import type { PageAssets } from './page-assets';

/** The client's entry point: plain TypeScript, bundled with uPlot and the stylesheets. */
const CLIENT_ENTRY = path.join(__dirname, '..', '..', 'src', 'page', 'client', 'main.ts');

/**
 * Bundles the status page with esbuild: one script and one stylesheet, minified, named by a
 * hash of their contents so the browser may cache them for good. `npm run build` writes the
 * result to dist/page/assets (build-page-cli.ts); a service started from source (`npm start`,
 * tests) bundles in memory on its first page request instead.
 */
export async function bundlePage(): Promise<PageAssets> {
  const result = await build({
    entryPoints: [CLIENT_ENTRY],
    bundle: true,
    minify: true,
    format: 'iife',
    // Browsers of the last few years; the page uses fetch, AbortController and ES2020.
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    outdir: '/page',
    entryNames: 'app-[hash]',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const files = result.outputFiles.map((file) => ({
    name: path.basename(file.path),
    contents: Buffer.from(file.contents),
  }));
  const script = files.find((file) => file.name.endsWith('.js'));
  const stylesheet = files.find((file) => file.name.endsWith('.css'));
  if (!script || !stylesheet) throw new Error('the page bundle lacks its script or stylesheet');
  return {
    html: pageHtml({ script: script.name, stylesheet: stylesheet.name }),
    files,
  };
}
