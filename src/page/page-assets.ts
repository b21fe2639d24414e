import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { bundlePage } from './build-page';

/** The status page's bundle: the text of its one script and one stylesheet. */
export interface PageBundle {
  script: string;
  stylesheet: string;
}

/** Where `npm run build` puts the bundle: dist/page/assets beside the compiled routes. */
export const ASSETS_DIR = path.join(__dirname, 'assets');
export const SCRIPT_FILE = 'app.js';
export const STYLESHEET_FILE = 'app.css';

/**
 * The page's bundle: the prebuilt one when there is one (the compiled service, the image),
 * else bundled now from the client's source (the service run from source by tsx: `npm start`,
 * the tests). esbuild is imported only then, so the image does not need it.
 */
export async function loadPageBundle(dir = ASSETS_DIR): Promise<PageBundle> {
  if (existsSync(path.join(dir, SCRIPT_FILE))) {
    return {
      script: readFileSync(path.join(dir, SCRIPT_FILE), 'utf8'),
      stylesheet: readFileSync(path.join(dir, STYLESHEET_FILE), 'utf8'),
    };
  }
  // require, not import(): ts-jest runs this file as CommonJS, where import() needs a flag.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const build = require('./build-page') as { bundlePage: typeof bundlePage };
  return build.bundlePage();
}
