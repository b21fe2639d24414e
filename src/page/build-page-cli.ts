import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundlePage } from './build-page';
import { ASSETS_DIR, INDEX_FILE } from './page-assets';

/**
 * `npm run build`'s last step: bundles the status page into dist/page/assets, next to the
 * compiled page routes, which serve it from there (the image has no esbuild).
 */
async function main(): Promise<void> {
  const assets = await bundlePage();
  rmSync(ASSETS_DIR, { recursive: true, force: true });
  mkdirSync(ASSETS_DIR, { recursive: true });
  writeFileSync(path.join(ASSETS_DIR, INDEX_FILE), assets.html);
  for (const file of assets.files) writeFileSync(path.join(ASSETS_DIR, file.name), file.contents);
  const bytes = assets.files.reduce((sum, file) => sum + file.contents.length, 0);
  console.log(`status page: ${assets.files.length + 1} files, ${bytes} bytes in ${ASSETS_DIR}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
