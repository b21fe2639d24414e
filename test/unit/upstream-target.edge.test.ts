// Edge cases of src/proxy/upstream-target.ts: kills mutants that survived
// test/proxy/upstream-target.test.ts (StrykerJS, 2026-12-07). Pure, no I/O.
import {
  apiOfPath,
  couldCreateMessage,
  couldLeavePrefix,
  deletedMessageId,
  messageIdOf,
  namesNativeMessage,
  targetPath,
  updatedMessageId,
  upstreamTarget,
} from '../../src/proxy/upstream-target';

const PROJECT = '0a059168-ead0-41af-9d1f-343dae832527';

describe('upstream target (edge cases)', () => {
  test('When a request target does not start with / (nor is absolute), then what goes upstream still does', () => {
    // Appended to the space URL, "@evil.example/…" would make evil.example the host.
    expect(upstreamTarget('@evil.example/api/messaging/messages')).toBe(
      '/@evil.example/api/messaging/messages',
    );
    expect(upstreamTarget('*')).toBe('/*');
  });

  test('When a target has a query, then its path is what comes before it', () => {
    expect(targetPath('/api/messaging/logs?x=1?y')).toBe('/api/messaging/logs');
    expect(targetPath('/a')).toBe('/a');
  });

  test('When a path is under /api/messaging (any case), then errors are native; else compatibility', () => {
    expect(apiOfPath('/api/messaging/logs')).toBe('native');
    expect(apiOfPath('/API/Messaging/messages')).toBe('native');
    expect(apiOfPath('/2010-04-01/Accounts/a/Messages.json')).toBe('cxml');
    expect(apiOfPath('/x/api/messaging')).toBe('cxml');
  });

  test('When a dot segment has spaces around it once decoded, then it could leave the prefix', () => {
    expect(couldLeavePrefix('/api/messaging/%20../x')).toBe(true);
    expect(couldLeavePrefix('/api/messaging/ .. /x')).toBe(true);
  });

  test('When a create path ends in a . segment, then it could create a message', () => {
    expect(couldCreateMessage('POST', '/api/messaging/messages/.')).toBe(true);
    expect(couldCreateMessage('POST', '/2010-04-01/Accounts/a/Messages/%2e')).toBe(true);
  });

  test('When a path only ends like a native message under another prefix, then it does not name one', () => {
    expect(namesNativeMessage('/x/messaging/messages/a')).toBe(false);
    expect(namesNativeMessage('/api/laml/messages/a')).toBe(false);
    // A decoded ? inside the id is still an id: the answer is read and rewritten.
    expect(namesNativeMessage('/api/messaging/messages/%3Fa')).toBe(true);
  });

  test('When the project is a real (UUID) project id, then the compatibility message is recognised', () => {
    expect(updatedMessageId('POST', `/2010-04-01/Accounts/${PROJECT}/Messages/SM1.json`)).toBe(
      'SM1',
    );
    expect(
      deletedMessageId('DELETE', `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/SM1`),
    ).toBe('SM1');
  });

  test('When there is more before the resource, then no message is named (SignalWire routes it nowhere)', () => {
    expect(updatedMessageId('PATCH', '/x/api/messaging/messages/a')).toBeNull();
    expect(deletedMessageId('DELETE', '/x/api/messaging/messages/a')).toBeNull();
    expect(updatedMessageId('POST', `/x/2010-04-01/Accounts/${PROJECT}/Messages/SM1`)).toBeNull();
    expect(deletedMessageId('DELETE', `/x/2010-04-01/Accounts/${PROJECT}/Messages/SM1`)).toBeNull();
  });

  test('When the id has .json only at its end, then only that is cut; an empty id is none', () => {
    expect(messageIdOf('/2010-04-01/Accounts/p/Messages/a.json.b')).toBe('a.json.b');
    expect(messageIdOf('/2010-04-01/Accounts/p/Messages/a.JSON')).toBe('a');
    expect(messageIdOf('/2010-04-01/Accounts/p/Messages/.json')).toBeNull();
  });
});
