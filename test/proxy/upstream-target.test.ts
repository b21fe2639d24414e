import fc from 'fast-check';
import {
  couldCreateMessage,
  couldLeavePrefix,
  deletedMessageId,
  messageIdOf,
  namesNativeMessage,
  parameterName,
  queryParameterNames,
  updatedMessageId,
  upstreamTarget,
} from '../../src/proxy/upstream-target';

/** Where a proxied request goes, and which ones must not go as they came (pure, no I/O). */

describe('upstreamTarget', () => {
  it.each([
    ['/api/messaging/messages', '/api/messaging/messages'],
    ['/api/messaging/logs/a?x=1&y=%2B1', '/api/messaging/logs/a?x=1&y=%2B1'],
    ['http://sw-status.internal/api/messaging/messages?x=1', '/api/messaging/messages?x=1'],
    ['https://user:pw@evil.example:8443/2010-04-01/Accounts', '/2010-04-01/Accounts'],
    ['HTTP://host', '/'],
    ['/api/messaging/logs/a#fragment', '/api/messaging/logs/a'],
  ])('When the request target is %s, then SignalWire gets %s', (original, target) => {
    expect(upstreamTarget(original)).toBe(target);
  });

  it('When the path starts with two slashes, then it stays a path (the space URL keeps its host)', () => {
    const target = upstreamTarget('//evil.example/api/messaging/logs');
    expect(target).toBe('//evil.example/api/messaging/logs');
    expect(new URL(`https://space.signalwire.com${target}`).host).toBe('space.signalwire.com');
  });
});

describe('queryParameterNames (as Rails files them)', () => {
  it.each([
    ['/m?a=1&b=2', ['a', 'b']],
    ['/m?trace=1;status_callback=x', ['trace', 'status_callback']],
    ['/m?a=1;%20b=2', ['a', ' b']],
    [
      '/m?status_callback]=x&]status_callback=x&[status_callback=x',
      Array(3).fill('status_callback'),
    ],
    ['/m?StatusCallback%5B%5D=x&a[b][c]=1', ['StatusCallback', 'a']],
    ['/m?%ZZ=1&[]=2', ['%ZZ', '[]']],
    ['/m', []],
  ])('When the target is %s, then the names are %j', (target, names) => {
    expect(queryParameterNames(target)).toEqual(names);
  });

  it('When a name is exactly a field, then parameterName leaves it as it is', () => {
    expect(parameterName('StatusCallback')).toBe('StatusCallback');
  });
});

describe('couldCreateMessage', () => {
  it.each(['GET', 'HEAD', 'get'])('When the method is %s, then nothing is a create', (method) => {
    expect(couldCreateMessage(method, '/api/messaging/messages.json')).toBe(false);
  });

  it.each([
    '/2010-04-01/Accounts/a/Messages/b.json',
    '/2010-04-01/Accounts/a/Messages/b/Media',
    '/2010-04-01/Accounts/a/Calls.json',
    '/api/messaging/logs/b',
    '/api/messaging/messagesx',
    '/api/messaging/messages/b%3Fx=1',
  ])('When a POST names %s, then it is not a create', (path) => {
    expect(couldCreateMessage('POST', path)).toBe(false);
  });

  it.each([
    '/2010-04-01/Accounts/a/Messages.xml',
    '/2010-04-01/Accounts/a/mEsSaGeS',
    '/2010-04-01/Accounts/a/Messages%20',
    '/2010-04-01/Accounts/a/Messages%5C',
    '/2010-04-01/Accounts/a/Messages\\',
    '/2010-04-01/Accounts/a/b/..%2F..%2Fa%2FMessages',
    '/api/messaging/messages;jsessionid=1',
    '/api/messaging/%',
    '/api/messaging/messages%3Fx=1',
    '/api/messaging/messages%3Fx=1%2Fy',
    '/api/messaging/messages%23',
    '/api/messaging/messages%00',
    '/api/messaging/x%3F/../messages',
  ])('When a POST names %s, then it could be a create', (path) => {
    expect(couldCreateMessage('POST', path)).toBe(true);
  });
});

describe('couldLeavePrefix', () => {
  it.each([
    '/api/messaging/logs/a1b2c3d4-e5f6-7890-abcd-ef1234567890',
    '/2010-04-01/Accounts/a/Messages.json',
    '/2010-04-01/Accounts/a/Messages/b/Media/c..json',
    '/api/messaging/logs/%C3%A9%ZZ',
    '/api/messaging//logs',
  ])('When the path is %s, then it stays where it is', (path) => {
    expect(couldLeavePrefix(path)).toBe(false);
  });

  it.each([
    '/api/messaging/..',
    '/api/messaging/./logs',
    '/api/messaging/%2E%2e/x',
    '/api/messaging/%252e%252e/x',
    '/api/messaging/a%5C..%5Cx',
    '/api/messaging/..;x=1/x',
    '/api/messaging/%ZZ/%2e./x',
    '/api/messaging/%25252525252e',
  ])('When the path is %s, then it could leave its prefix upstream', (path) => {
    expect(couldLeavePrefix(path)).toBe(true);
  });
});

describe('namesNativeMessage', () => {
  it.each([
    '/api/messaging/messages/b',
    '/api/messaging/Messages/b',
    '/api/messaging//messages/b/',
    '/api/messaging/messages.json/b',
    '/api/messaging/x/../messages/b',
    '/api/messaging/messages%2Fb',
    '/api/messaging/%',
  ])('When the path is %s, then its answer is read and rewritten', (path) => {
    expect(namesNativeMessage(path)).toBe(true);
  });

  it.each([
    '/api/messaging/messages',
    '/api/messaging/logs/b',
    '/api/messaging/messagesx/b',
    '/2010-04-01/Accounts/a/Messages/b.json',
  ])('When the path is %s, then its answer streams as it comes', (path) => {
    expect(namesNativeMessage(path)).toBe(false);
  });
});

describe('updatedMessageId', () => {
  it.each([
    ['PATCH', '/api/messaging/messages/Ab-1', 'Ab-1'],
    ['POST', '/api/laml/2010-04-01/Accounts/p/Messages/SM1.json', 'SM1'],
    ['POST', '/2010-04-01/Accounts/p/messages/SM%32', 'SM2'],
    ['PATCH', '/api/messaging/messages/Ab-1/', 'Ab-1'],
    ['POST', '/2010-04-01/Accounts/p/Messages/SM1.json/', 'SM1'],
  ])('When %s %s, then it updates message %s', (method, path, id) => {
    expect(updatedMessageId(method, path)).toBe(id);
  });

  it.each([
    ['GET', '/api/messaging/messages/a'],
    ['PATCH', '/api/messaging/messages/a/b'],
    ['POST', '/api/messaging/messages/a'],
    ['POST', '/2010-04-01/Accounts/p/Messages/SM1/Media.json'],
    ['DELETE', '/2010-04-01/Accounts/p/Messages/SM1.json'],
    ['POST', '/2010-04-01/Accounts/p/Messages/%E0'],
  ])('When %s %s, then it updates no message', (method, path) => {
    expect(updatedMessageId(method, path)).toBeNull();
  });
});

describe('deletedMessageId', () => {
  it.each([
    ['DELETE', '/api/laml/2010-04-01/Accounts/p/Messages/SM1.json', 'SM1'],
    ['DELETE', '/2010-04-01/Accounts/p/Messages/SM1/', 'SM1'],
    ['DELETE', '/api/messaging/messages/Ab-1', 'Ab-1'],
  ])('When %s %s, then it deletes message %s', (method, path, id) => {
    expect(deletedMessageId(method, path)).toBe(id);
  });

  it.each([
    ['POST', '/2010-04-01/Accounts/p/Messages/SM1.json'],
    ['DELETE', '/2010-04-01/Accounts/p/Messages/SM1/Media/ME1.json'],
    ['DELETE', '/2010-04-01/Accounts/p/Messages.json'],
    ['DELETE', '/api/messaging/messages/a/b'],
    ['DELETE', '/2010-04-01/Accounts/p/Messages/%E0'],
    // More before `/Accounts`: a route SignalWire does not have (its 404 checks no password).
    ['DELETE', '/api/laml/2010-04-01/nowhere/Accounts/p/Messages/SM1.json'],
    ['DELETE', '/2010-04-01/x/Accounts/p/Messages/SM1'],
  ])('When %s %s, then it deletes no message', (method, path) => {
    expect(deletedMessageId(method, path)).toBeNull();
  });
});

describe('a long run of slashes in the path', () => {
  // The time of the fastest of a few calls: what the work costs, not what the machine did
  // meanwhile.
  const fastest = (work: () => unknown): number => {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const start = process.hrtime.bigint();
      work();
      best = Math.min(best, Number(process.hrtime.bigint() - start));
    }
    return best;
  };

  it('When slashes fill a 15 000-character path short of its end, then reading it costs about what an ordinary path of that length does (a regex from every slash cost ~1 000×)', () => {
    const slashes = `/api/messaging/${'/'.repeat(15_000)}x`;
    const ordinary = `/api/messaging/${'a'.repeat(15_000)}x`;
    expect(deletedMessageId('DELETE', slashes)).toBeNull();
    const ratio =
      fastest(() => deletedMessageId('DELETE', slashes)) /
      fastest(() => deletedMessageId('DELETE', ordinary));
    expect(ratio).toBeLessThan(20);
  });

  it('When paths end in any number of slashes, then the id is read as before them', () => {
    fc.assert(
      fc.property(fc.constantFrom('Ab-1', 'SM1.json', '%41', ''), fc.nat(5), (last, trailing) => {
        const path = `/api/messaging/messages/${last}${'/'.repeat(trailing)}`;
        const id = decodeURIComponent(last.replace(/\.json$/i, ''));
        expect(messageIdOf(path)).toBe(id === '' ? 'messages' : id);
        expect(deletedMessageId('DELETE', path)).toBe(id === '' ? null : id);
      }),
    );
  });
});
