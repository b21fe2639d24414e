import { verifySignature } from '../../src/callbacks/signature';
import type { HistoryDto, MessageDto } from '../../src/messages/message-dto';
import { canonicalStatus } from '../../src/messages/statuses';
import { E2E_FROM as FROM, E2E_PROJECT as PROJECT, startStack } from './stack';
import type { Stack } from './stack';

/**
 * End to end over real sockets, for every simulator scenario and both APIs:
 * official SDK (compatibility) or the seed's JSON over fetch (native) → send proxy →
 * simulator → signed callbacks to PUBLIC_BASE_URL → receiver → PostgreSQL → query API.
 *
 * The simulator's steps are 200 ms apart, so the proxy's own record of a send (made before
 * it answers the client) usually comes first in the history. Not always: on a loaded machine
 * (a CI run's fourth pass) the first callback once beat it, an order production sees too and
 * test/e2e/callback-order.test.ts covers. So the callbacks' rows are checked in arrival order
 * and the proxy's row once, wherever it landed.
 */

const CLIENT_CALLBACK = 'https://app.example.com/sms/status';

type Row = Pick<HistoryDto, 'status' | 'raw_status' | 'error_code' | 'source'>;

const PROXY: Row = { status: 'queued', raw_status: 'queued', error_code: null, source: 'proxy' };
function cb(raw: string, errorCode: string | null = null): Row {
  return {
    status: canonicalStatus(raw),
    raw_status: raw,
    error_code: errorCode,
    source: 'callback',
  };
}

interface Outcome {
  status: string;
  errorCode: string | null;
  /** Callback rows, in arrival order (the proxy's own row aside). */
  callbacks: Row[];
}

interface Scenario {
  name: string;
  /** Last four digits of To: how the simulator picks the scenario. */
  suffix: string;
  mms: boolean;
  cxml: Outcome;
  native: Outcome;
}

const delivered: Scenario['cxml' | 'native'][] = [
  { status: 'delivered', errorCode: null, callbacks: [cb('queued'), cb('sent'), cb('delivered')] },
  {
    status: 'delivered',
    errorCode: null,
    callbacks: [cb('queued'), cb('initiated'), cb('sent'), cb('delivered')],
  },
];

const SCENARIOS: Scenario[] = [
  { name: 'delivered', suffix: '1000', mms: false, cxml: delivered[0]!, native: delivered[1]! },
  {
    name: 'undelivered 30003',
    suffix: '0003',
    mms: false,
    cxml: {
      status: 'undelivered',
      errorCode: '30003',
      callbacks: [cb('queued'), cb('sent'), cb('undelivered', '30003')],
    },
    native: {
      status: 'undelivered',
      errorCode: 'unreachable_destination_handset',
      callbacks: [
        cb('queued'),
        cb('initiated'),
        cb('sent'),
        cb('undelivered', 'unreachable_destination_handset'),
      ],
    },
  },
  {
    name: 'failed',
    suffix: '0004',
    mms: false,
    cxml: {
      status: 'failed',
      errorCode: '30008',
      callbacks: [cb('queued'), cb('failed', '30008')],
    },
    native: {
      status: 'failed',
      errorCode: 'unknown_error',
      callbacks: [cb('queued'), cb('failed', 'unknown_error')],
    },
  },
  {
    name: 'MMS stops at sent',
    suffix: '1010',
    mms: true,
    cxml: { status: 'sent', errorCode: null, callbacks: [cb('queued'), cb('sent')] },
    native: {
      status: 'sent',
      errorCode: null,
      callbacks: [cb('queued'), cb('initiated'), cb('sent')],
    },
  },
  // Every callback arrives twice; the copies are acknowledged and not stored again.
  { name: 'duplicates', suffix: '0005', mms: false, cxml: delivered[0]!, native: delivered[1]! },
  {
    name: 'out of order',
    suffix: '0006',
    mms: false,
    cxml: {
      status: 'delivered',
      errorCode: null,
      callbacks: [cb('queued'), cb('delivered'), cb('sent')],
    },
    native: {
      status: 'delivered',
      errorCode: null,
      callbacks: [cb('queued'), cb('initiated'), cb('delivered'), cb('sent')],
    },
  },
];

type Api = 'cxml' | 'native';
const APIS: Api[] = ['cxml', 'native'];

let stack: Stack;
/** Message id per `${api}:${scenario}`. */
const sent = new Map<string, string>();

function to(api: Api, scenario: Scenario): string {
  return `+1555${api === 'cxml' ? '7' : '8'}65${scenario.suffix}`;
}

beforeAll(async () => {
  stack = await startStack({ simulator: { stepDelayMs: 200 } });
  await Promise.all(
    SCENARIOS.flatMap((scenario) =>
      APIS.map(async (api) => {
        const id = await stack.send(api, to(api, scenario), {
          body: `${api} ${scenario.name}`,
          mms: scenario.mms,
          statusCallback: CLIENT_CALLBACK,
        });
        sent.set(`${api}:${scenario.name}`, id);
      }),
    ),
  );
  await stack.sim.waitForIdle();
});

afterAll(async () => {
  await stack.close();
});

describe.each(APIS)('%s API through the proxy', (api) => {
  it.each(SCENARIOS.map((s) => [s.name, s] as const))(
    'When the scenario is %s, then the stored message and its full history match what SignalWire reported',
    async (_name, scenario) => {
      const id = sent.get(`${api}:${scenario.name}`)!;
      const expected = scenario[api];
      const message = (await stack.message(id)) as MessageDto;

      expect(message).toMatchObject({
        id,
        api,
        project_id: PROJECT,
        from: FROM,
        to: to(api, scenario),
        kind: scenario.mms ? 'mms' : 'sms',
        status: expected.status,
        error_code: expected.errorCode,
        conflict: false,
        sent_via_proxy: true,
        client_status_callback: CLIENT_CALLBACK,
        ref: expect.any(String),
      });
      const history = message.history ?? [];
      const rows = history.map(({ status, raw_status, error_code, source }) => ({
        status,
        raw_status,
        error_code,
        source,
      }));
      expect(rows.filter((row) => row.source === 'proxy')).toEqual([PROXY]);
      expect(rows.filter((row) => row.source !== 'proxy')).toEqual(expected.callbacks);
      const seqs = history.map((h) => h.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

      // Every callback went to this service's URL, was signed for it, and was accepted at the
      // first attempt (copies of duplicates included).
      const deliveries = stack.sim.deliveries.filter((d) => d.messageId === id);
      expect(deliveries).toHaveLength(
        expected.callbacks.length * (scenario.name === 'duplicates' ? 2 : 1),
      );
      for (const d of deliveries) {
        const url = new URL(d.url);
        expect(`${url.origin}${url.pathname}`).toMatch(
          new RegExp(
            `^${stack.publicUrl}/callbacks/${api}/[A-Za-z0-9_-]+\\.[0-9a-z]+\\.[A-Za-z0-9_-]+$`,
          ),
        );
        expect(d.attempts.map((a) => a.statusCode)).toEqual([200]);
        const signature = verifySignature(
          stack.app.config.signingKeys,
          stack.app.config.publicBaseUrl,
          {
            headers: { 'x-signalwire-signature': d.signature },
            originalUrl: `${url.pathname}${url.search}`,
            body: api === 'cxml' ? 'form' : 'json',
            rawBody: Buffer.from(d.rawBody),
            formParams: api === 'cxml' ? [...new URLSearchParams(d.rawBody)] : [],
          },
        );
        expect(signature.ok).toBe(true);
      }
    },
  );
});
