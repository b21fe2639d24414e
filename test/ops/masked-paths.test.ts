import request from 'supertest';
import type { Express } from 'express';
import { createPublicApp } from '../../src/app';
import { maskTokens, maskUrlTokens } from '../../src/http/request-log';
import { createLogger } from '../../src/logger';
import { cxmlFields } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Callback tokens are masked in every path and URL the service writes (the request log, a 404's
 * message, a refused callback's candidate URLs, the simulator's log), and nothing else is: the
 * candidate URLs exist to show an operator which PUBLIC_BASE_URL the signature was checked
 * against, and a base URL may have a path of its own — even `/callbacks`.
 */

describe('maskTokens', () => {
  test.each([
    ['/callbacks/native/TOKEN', '/callbacks/native/[token]'],
    ['/CallBacks/CXML/TOKEN/', '/CallBacks/CXML/[token]'],
    ['/callbacks/native//TOKEN', '/callbacks/native/[token]'],
    ['/callbacks/native%2FTOKEN', '/callbacks/native/[token]'],
    ['/callbacks/native/x/../TOKEN', '/callbacks/native/[token]'],
    ['/callbacks/callbacks/native/TOKEN', '/callbacks/callbacks/native/[token]'],
    ['/callbacks/native/TOKEN/callbacks/cxml', '/callbacks/native/[token]'],
    ['/callbacks/TOKEN', '/callbacks/[token]'],
    ['/callbacks;x/cxml/TOKEN', '/callbacks/[token]'],
    ['/callbacks./cxml/TOKEN', '/callbacks/[token]'],
    ['/hooks/callbacks/cxml', '/hooks/callbacks/cxml'],
    ['/callbacks/callbacks/cxml', '/callbacks/callbacks/cxml'],
    ['/callbacks/native/', '/callbacks/native/'],
    ['/v1/messages/m1', '/v1/messages/m1'],
    ['/callbacksX/y', '/callbacksX/y'],
  ])('%s is written %s', (path, written) => {
    expect(maskTokens(path)).toBe(written);
  });

  test.each([
    [
      'https://callbacks.example.com/callbacks/cxml/TOKEN',
      'https://callbacks.example.com/callbacks/cxml/[token]',
    ],
    ['https://callbacks.example.com:443/callbacks', 'https://callbacks.example.com:443/callbacks'],
    [
      'http://127.0.0.1:8080/callbacks/native/TOKEN',
      'http://127.0.0.1:8080/callbacks/native/[token]',
    ],
    ['https://hooks.example.com', 'https://hooks.example.com'],
  ])('the URL %s is written %s', (url, written) => {
    expect(maskUrlTokens(url)).toBe(written);
  });
});

describe('a refused callback under a base URL whose path is /callbacks', () => {
  const lines: string[] = [];
  let t: TestApp;
  let app: Express;
  beforeAll(async () => {
    t = await createTestApp({ PUBLIC_BASE_URL: 'https://hooks.example.com/callbacks' });
    const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
    app = createPublicApp({ ...t.deps, logger });
  });
  afterAll(async () => {
    await t.close();
  });

  test('When a signed callback without a token is refused, then the logged candidate URLs name the path that was checked', async () => {
    await request(app)
      .post('/callbacks/cxml')
      .set('Content-Type', 'application/x-www-form-urlencoded')
      .set('X-SignalWire-Signature', 'bm90LWEtdmFsaWQtc2lnbmF0dXJl')
      .send(new URLSearchParams(cxmlFields({})).toString())
      .expect(403);
    const refusal = lines
      .map((line) => JSON.parse(line) as { msg: string; candidate_urls?: string[] })
      .find((entry) => entry.msg === 'callback refused');
    expect(refusal?.candidate_urls).toContain('https://hooks.example.com/callbacks/callbacks/cxml');
  });
});
