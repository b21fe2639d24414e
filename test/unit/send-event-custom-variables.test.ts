import { MAX_KEPT_CUSTOM_VARIABLES_BYTES, sendEvent } from '../../src/proxy/send-event';
import type { SendContext } from '../../src/proxy/send-event';

/**
 * The proxy's record of a native send keeps the send's custom_variables (SignalWire's create
 * answer does not hold them), so the callback reconciliation relays in place of lost ones can
 * echo them: whatever STORE_BODY says, without NUL, only when set, and not past a bound.
 */
const context: SendContext = {
  api: 'native',
  ref: 'ref',
  projectId: 'project',
  to: '+15551230000',
  from: '+15559876543',
  body: 'order shipped',
  kind: 'sms',
  clientStatusCallback: null,
  receivedAt: new Date('2026-12-03T10:00:00Z'),
  storeBody: false,
};
const ID = 'a1b2c3d4-e5f6-7890-abcd-ef1234567890';
const answer = { id: ID, status: 'queued', body: 'order shipped' };

test('When a native send sets custom_variables, then its record keeps them, with STORE_BODY off too', () => {
  const event = sendEvent(
    { ...context, customVariables: { order_id: 'A-1', note: 'x\u0000y' } },
    answer,
  );
  expect(event?.raw).toEqual({
    id: ID,
    status: 'queued',
    custom_variables: { order_id: 'A-1', note: 'xy' },
  });
});

test('When a native send sets none, then its record keeps them empty, as its callbacks echo them', () => {
  expect(sendEvent({ ...context, customVariables: {} }, answer)?.raw).toHaveProperty(
    'custom_variables',
    {},
  );
});

test('When a send has no custom_variables to set (compatibility), then its record has none', () => {
  expect(sendEvent(context, answer)?.raw).not.toHaveProperty('custom_variables');
});

test('When SignalWire’s answer states custom_variables, then the record keeps the answer’s', () => {
  const event = sendEvent(
    { ...context, customVariables: { order_id: 'as-sent' } },
    { ...answer, custom_variables: { order_id: 'as-answered' } },
  );
  expect(event?.raw['custom_variables']).toEqual({ order_id: 'as-answered' });
});

test('When the custom_variables are past the bound, then the send is recorded without them', () => {
  const key = `k_${'x'.repeat(MAX_KEPT_CUSTOM_VARIABLES_BYTES)}`;
  const event = sendEvent({ ...context, customVariables: { [key]: 'v' } }, answer);
  expect(event).toMatchObject({ messageId: ID, rawStatus: 'queued' });
  expect(event?.raw).not.toHaveProperty('custom_variables');
});
