import path from 'node:path';
import { build } from 'esbuild';
import type { PageBundle } from './page-assets';

/** The client's entry point: plain TypeScript, bundled with uPlot and the stylesheets. */
const CLIENT_ENTRY = path.join(__dirname, '..', '..', 'src', 'page', 'client', 'main.ts');

/**
 * Bundles the status page with esbuild: one script and one stylesheet, minified, which the
 * page's HTML carries inside it (page-html.ts). `npm run build` writes them to dist/page/assets
 * (build-page-cli.ts); a service started from source (`npm start`, tests) bundles in memory on
 * its first page request instead.
 */
export async function bundlePage(): Promise<PageBundle> {
  const result = await build({
    entryPoints: [CLIENT_ENTRY],
    bundle: true,
    minify: true,
    format: 'iife',
    // Browsers of the last few years; the page uses fetch, AbortController and ES2020.
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    outdir: '/page',
    entryNames: 'app',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const text = (extension: string): string => {
    const file = result.outputFiles.find((output) => output.path.endsWith(extension));
    if (!file) throw new Error(`the page bundle lacks its ${extension} file`);
    return file.text;
  };
  return { script: text('.js'), stylesheet: text('.css') };
}
