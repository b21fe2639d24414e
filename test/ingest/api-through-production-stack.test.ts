import { readdirSync } from 'node:fs';
import path from 'node:path';
import express from 'express';
import type { Express } from 'express';
import request from 'supertest';
import type { createFastServer } from '../../src/http/fast-server';

/**
 * The whole API suite (test/api) a second time, through what production runs instead of what
 * supertest and the test helper build by default:
 * - every Express app goes through createFastServer (requests and responses born with the
 *   app's prototypes) instead of a plain http.createServer, so any difference in behaviour
 *   the fast server could cause fails an existing API test;
 * - callbacks are recorded by the group-commit recorder instead of one transaction each.
 *
 * supertest is wrapped for this file only (jest's module registry is per file): an Express
 * app handed to it becomes a fast server, which supertest starts and stops per request as it
 * does with the server it would have made. New files in test/api are picked up by themselves.
 */
jest.mock('supertest', () => {
  const actual = jest.requireActual<typeof request>('supertest');
  const fast = jest.requireActual<{ createFastServer: typeof createFastServer }>(
    '../../src/http/fast-server',
  );
  const isExpressApp = (app: unknown): app is Express =>
    typeof app === 'function' && 'handle' in app && 'request' in app && 'response' in app;
  const wrapped = (app: unknown, options?: object) =>
    actual(isExpressApp(app) ? fast.createFastServer(app) : (app as never), options);
  return Object.assign(wrapped, actual);
});

process.env.SW_TEST_RECORDER = 'group-commit';

const apiDir = path.join(__dirname, '..', 'api');
const files = readdirSync(apiDir)
  .filter((name) => name.endsWith('.test.ts'))
  .sort();

test('When the API suite is collected, then it is not empty', () => {
  expect(files.length).toBeGreaterThan(0);
});

test('When supertest is given an Express app here, then requests reach it already carrying its prototypes', async () => {
  const app = express();
  const arrived: boolean[] = [];
  // app.handle (untyped, internal) is where Express swaps the prototypes: look just before.
  type Handle = (req: object, res: object, next?: unknown) => void;
  const internals = app as unknown as { handle: Handle };
  const handle = internals.handle.bind(app);
  internals.handle = (req, res, next) => {
    arrived.push(
      Object.getPrototypeOf(req) === app.request && Object.getPrototypeOf(res) === app.response,
    );
    handle(req, res, next);
  };
  app.get('/', (_req, res) => {
    res.send('ok');
  });
  expect((await request(app).get('/')).text).toBe('ok');
  expect(arrived).toEqual([true]);
});

for (const file of files) {
  describe(`through the fast server and group commit: ${file}`, () => {
    // Registers the file's hooks and tests inside this describe: it has to be synchronous,
    // which rules out import().
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(path.join(apiDir, file));
  });
}
