import { sendEvent } from '../../src/proxy/send-event';
import type { SendContext } from '../../src/proxy/send-event';

/**
 * The proxy's record of a send, made from SignalWire's answer: PostgreSQL cannot store a NUL,
 * so what is stored goes without one — except in what names the message or its status, where
 * stripping could name another message: such an answer is not recorded at all.
 */
const context: SendContext = {
  api: 'native',
  ref: 'ref',
  projectId: 'project',
  to: '+15551230000',
  from: '+1555\u00009876543',
  body: 'a\u0000b',
  kind: 'sms',
  clientStatusCallback: null,
  receivedAt: new Date('2026-12-03T10:00:00Z'),
  storeBody: true,
};
const ID = 'a1b2c3d4-e5f6-7890-abcd-ef1234567890';

test('When the answer or the send holds a NUL in free text, then the event is made without it', () => {
  const event = sendEvent(context, {
    id: ID,
    status: 'queued',
    body: 'a\u0000b',
    custom_variables: { order: 'x\u0000y' },
  });
  expect(event).toMatchObject({ messageId: ID, rawStatus: 'queued', from: '+15559876543' });
  expect(event?.raw).toEqual({
    id: ID,
    status: 'queued',
    body: 'ab',
    custom_variables: { order: 'xy' },
  });
  expect(event?.send?.body).toBe('ab');
});

test.each([
  ['id', { id: `${ID.slice(0, 8)}\u0000${ID.slice(8)}`, status: 'queued' }],
  ['status', { id: ID, status: 'que\u0000ued' }],
  ['error_code', { id: ID, status: 'failed', error_code: '3000\u00003' }],
])('When the answer’s %s holds a NUL, then no event is made under a stripped name', (_, answer) => {
  expect(sendEvent(context, answer)).toBeNull();
});
