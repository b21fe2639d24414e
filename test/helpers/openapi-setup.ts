import { takeOpenApiViolations } from './openapi';

// Every test fails when an answer it received broke the OpenAPI document (test/helpers/openapi.ts).
afterEach(() => {
  const violations = takeOpenApiViolations();
  if (violations.length > 0) {
    throw new Error(`Answers that do not match the OpenAPI document:\n${violations.join('\n\n')}`);
  }
});
