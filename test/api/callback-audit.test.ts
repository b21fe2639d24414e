import request from 'supertest';
import { sendEvent } from '../../src/proxy/send-event';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/** Findings of the callback receiver's audit, each through HTTP and the real write path. */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });
});
afterAll(() => t.close());

function getMessage(id: string) {
  return request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
}

describe('the kind of a message (MMS has no delivery receipt, DESIGN §11)', () => {
  test('When a callback with NumMedia=0 beats the proxy’s record of an MMS send (SendAsMms), then the message is still an MMS', async () => {
    const fields = cxmlFields({ MessageStatus: 'sent', NumMedia: '0' });
    const sid = fields.MessageSid!;
    await postCxml(t.publicApp, fields).expect(200);

    // What the proxy records once SignalWire has answered the create (seed 004's Message):
    // SendAsMms=true without MediaUrl, so the send knows it is an MMS while num_media is 0.
    const send = sendEvent(
      {
        api: 'cxml',
        ref: 'audit-kind-ref-01',
        projectId: fields.AccountSid!,
        to: fields.To!,
        from: fields.From!,
        body: null,
        kind: 'mms',
        clientStatusCallback: null,
        receivedAt: new Date(),
        storeBody: false,
      },
      {
        sid,
        account_sid: fields.AccountSid,
        status: 'queued',
        num_segments: '1',
        num_media: '0',
        date_created: 'Mon, 13 Aug 2018 21:38:46 +0000',
      },
    );
    await t.deps.recorder.record(send!);

    const { body } = await getMessage(sid);
    expect(body).toMatchObject({ status: 'sent', sent_via_proxy: true });
    // An MMS at `sent` is final; taken for an SMS it would be swept and end `stuck`.
    expect(body.kind).toBe('mms');
  });
});
