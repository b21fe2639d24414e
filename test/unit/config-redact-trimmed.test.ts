import { loadConfig, redactSecrets } from '../../src/config';

test('When SIGNALWIRE_CREDENTIALS is written with spaces around the colon, then the token the service uses is the one redacted', () => {
  const env = { SIGNALWIRE_CREDENTIALS: 'project-1 : rest-token-spaced, project-2:rest-token-2 ' };
  // The service reads the token trimmed (config.ts): that is the value that could be printed.
  expect(loadConfig(env).signalwireCredentials?.get('project-1')?.token).toBe('rest-token-spaced');
  const redacted = redactSecrets('token=rest-token-spaced; other=rest-token-2', env);
  expect(redacted).not.toContain('rest-token-spaced');
  expect(redacted).not.toContain('rest-token-2');
});
