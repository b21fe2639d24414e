import { loadConfig } from '../../src/config';
import { configProblems } from '../helpers/config-problems';

describe('SIGNALWIRE_CREDENTIALS', () => {
  test('When entries are written with spaces around the colon, then the project and token are read without them', () => {
    const config = loadConfig({
      SIGNALWIRE_CREDENTIALS: 'project-1 : PTtoken1 , project-2:PTtoken2',
    });
    expect([...config.signalwireCredentials]).toEqual([
      ['project-1', { projectIdAsWritten: 'project-1', token: 'PTtoken1' }],
      ['project-2', { projectIdAsWritten: 'project-2', token: 'PTtoken2' }],
    ]);
  });

  test('When a project is listed twice, then start-up refuses it by name without echoing a token', () => {
    const found = configProblems({
      SIGNALWIRE_CREDENTIALS: 'project-1:PTfirst1,project-1:PTsecond2',
    });
    expect(found).toEqual([expect.stringMatching(/^SIGNALWIRE_CREDENTIALS: /)]);
    expect(found.join('\n')).not.toMatch(/PTfirst1|PTsecond2/);
  });
});
