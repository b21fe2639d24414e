/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // One embedded PostgreSQL (or TEST_DATABASE_URL) and a migrated template for the whole run;
  // every test file clones its own database from the template.
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  // Every answer an API test gets must match the OpenAPI document (test/helpers/openapi.ts).
  setupFilesAfterEnv: ['<rootDir>/test/helpers/openapi-setup.ts'],
  // Two cores: more workers only contend with PostgreSQL for CPU.
  maxWorkers: 2,
  testTimeout: 30000,
};
