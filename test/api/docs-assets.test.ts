import request from 'supertest';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

test.each([
  // swagger-ui-dist's demo page: it loads https://petstore.swagger.io/v2/swagger.json.
  '/docs/index.html',
  '/docs/swagger-initializer.js',
  // An OAuth redirect target the service has no use for.
  '/docs/oauth2-redirect.html',
  '/docs/oauth2-redirect.js',
  '/docs/package.json',
  '/docs/swagger-ui-bundle.js.map',
  '/docs/README.md',
])(
  'When %s of the swagger-ui-dist package is asked, then it is not served: /docs serves only what its page loads',
  async (path) => {
    await request(t.internalApp).get(path).expect(404);
  },
);
