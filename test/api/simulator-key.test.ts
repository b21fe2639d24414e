import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The simulator's signing key is published in this repository. It is the default
 * SIGNALWIRE_SIGNING_KEYS only while the simulator is the upstream (DESIGN §7): with a real
 * SIGNALWIRE_SPACE_URL and no keys, a callback signed with it is refused, and only callbacks
 * carrying a per-send token get in.
 */

describe('with a real SIGNALWIRE_SPACE_URL and no signing keys', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      SIGNALWIRE_SPACE_URL: 'https://example.signalwire.com',
      SIGNALWIRE_SIGNING_KEYS: '',
    });
  });
  afterAll(() => t.close());

  test('When a callback is signed with the published simulator key, then it is refused', async () => {
    const res = await postCxml(t.publicApp, cxmlFields(), { key: SIMULATOR_SIGNING_KEY });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('invalid_signature');
  });

  test('When a callback carries a valid per-send token, then it is accepted', async () => {
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const res = await postCxml(t.publicApp, cxmlFields(), {
      path: `/callbacks/cxml/${token}`,
      key: 'not-a-key-anyone-has',
    });
    expect(res.status).toBe(200);
  });
});

describe('with the simulator as the upstream', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: '', SIGNALWIRE_SIGNING_KEYS: '' });
  });
  afterAll(() => t.close());

  test('When a callback is signed with the simulator key, then it is accepted (its callbacks verify like SignalWire’s)', async () => {
    const res = await postCxml(t.publicApp, cxmlFields(), { key: SIMULATOR_SIGNING_KEY });
    expect(res.status).toBe(200);
  });
});
