import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { bundlePage } from './build-page';

export interface PageFile {
  /** Content-hashed file name (app-XXXX.js), served under /page/. */
  name: string;
  contents: Buffer;
}

export interface PageAssets {
  html: string;
  files: PageFile[];
}

/** Where `npm run build` puts the bundle: dist/page/assets beside the compiled routes. */
export const ASSETS_DIR = path.join(__dirname, 'assets');
export const INDEX_FILE = 'index.html';

/**
 * The page's files: the prebuilt bundle when there is one (the compiled service, the image),
 * else bundled now from the client's source (the service run from source by tsx: `npm start`,
 * the tests). esbuild is imported only then, so the image does not need it.
 */
export async function loadPageAssets(dir = ASSETS_DIR): Promise<PageAssets> {
  if (existsSync(path.join(dir, INDEX_FILE))) {
    return {
      html: readFileSync(path.join(dir, INDEX_FILE), 'utf8'),
      files: readdirSync(dir)
        .filter((name) => name !== INDEX_FILE)
        .map((name) => ({ name, contents: readFileSync(path.join(dir, name)) })),
    };
  }
  // require, not import(): ts-jest runs this file as CommonJS, where import() needs a flag.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const build = require('./build-page') as { bundlePage: typeof bundlePage };
  return build.bundlePage();
}
