import { ConfigError, loadConfig } from '../../src/config';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('SIGNALWIRE_CREDENTIALS', () => {
  test('When entries are written with spaces around the colon, then the project and token are read without them', () => {
    const config = loadConfig({
      SIGNALWIRE_CREDENTIALS: 'project-1 : PTtoken1 , project-2:PTtoken2',
    });
    expect([...config.signalwireCredentials]).toEqual([
      ['project-1', 'PTtoken1'],
      ['project-2', 'PTtoken2'],
    ]);
  });

  test('When a project is listed twice, then start-up refuses it by name without echoing a token', () => {
    const found = problems({ SIGNALWIRE_CREDENTIALS: 'project-1:PTfirst1,project-1:PTsecond2' });
    expect(found).toEqual([expect.stringMatching(/^SIGNALWIRE_CREDENTIALS: /)]);
    expect(found.join('\n')).not.toMatch(/PTfirst1|PTsecond2/);
  });
});
