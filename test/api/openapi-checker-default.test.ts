import { answerChecker, openApiDocument } from '../helpers/openapi';

/**
 * test/helpers/openapi.ts exists so the document cannot drift from what the routes do. Every
 * operation has a `default` for the listener's own refusals (408, 417, 431, 501): only those
 * may fall to it. A route that starts answering another status it does not declare (a 500 from
 * /healthz, a 502 from the stats) must be reported.
 */
const check = answerChecker(openApiDocument());
const errorBody = (code: string) =>
  Buffer.from(JSON.stringify({ error: { code, message: 'x', request_id: 'r' } }));

test.each([
  ['/healthz', 500],
  ['/metrics', 503],
  ['/v1/stats', 502],
  ['/v1/messages/abc', 409],
])('When the checker sees an undeclared GET %s → %d, then it reports it', (url, status) => {
  const problem = check({
    listener: 'internal',
    method: 'GET',
    url,
    status,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: errorBody('internal'),
  });
  expect(problem).toMatch(/not in the document/);
});

test('When the checker sees a refusal the listener writes itself, then it checks it against the default', () => {
  const problem = check({
    listener: 'internal',
    method: 'GET',
    url: '/healthz',
    status: 431,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: errorBody('headers_too_large'),
  });
  expect(problem).toBeNull();
});
