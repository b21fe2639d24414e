import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * /docs serves Swagger UI's files from the swagger-ui-dist package; the server needs only their
 * folder. The package's entry point (index.js, for getAbsoluteFSPath) first require()s its
 * 1.7 MB browser bundles (React, Redux, core-js) into the server: measured on Node 24.20 with
 * the production dependencies, the service ready and idle took 131–142 MB RSS against 115–117
 * MB without them, and it left browser globals behind (`CSS`, `__core-js_shared__`).
 */
const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

jest.setTimeout(60_000);

test('When the OpenAPI routes are loaded, then swagger-ui’s browser bundles are not executed in the server', async () => {
  const probe = `
    require('./src/openapi/openapi.routes.ts');
    const loaded = Object.keys(require.cache)
      .filter((file) => /swagger-ui-dist[\\\\/]swagger-ui-(bundle|standalone-preset)\\.js$/.test(file))
      .map((file) => path.basename(file));
    console.log(JSON.stringify({ loaded, CSS: typeof globalThis.CSS }));
  `;
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '-e', `const path = require('node:path');${probe}`],
    { cwd: ROOT, env: { ...process.env, NODE_ENV: 'production' } },
  );
  expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ loaded: [], CSS: 'undefined' });
});
