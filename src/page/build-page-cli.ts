import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundlePage } from './build-page';
import { ASSETS_DIR, SCRIPT_FILE, STYLESHEET_FILE } from './page-assets';
import { assemblePage } from './page-html';

/**
 * `npm run build`'s last step: bundles the status page into dist/page/assets, next to the
 * compiled page routes, which serve it from there (the image has no esbuild).
 */
async function main(): Promise<void> {
  const bundle = await bundlePage();
  // Fails the build, not the first page request, if the bundle cannot be inlined.
  const { html } = assemblePage(bundle);
  rmSync(ASSETS_DIR, { recursive: true, force: true });
  mkdirSync(ASSETS_DIR, { recursive: true });
  writeFileSync(path.join(ASSETS_DIR, SCRIPT_FILE), bundle.script);
  writeFileSync(path.join(ASSETS_DIR, STYLESHEET_FILE), bundle.stylesheet);
  console.log(`status page: ${Buffer.byteLength(html)} bytes of HTML, bundle in ${ASSETS_DIR}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
