import { directRecorder } from '../../src/messages/event-recorder';
import type { EventRecorder } from '../../src/messages/event-recorder';
import type { MessageDto } from '../../src/messages/message-dto';
import type { EventSource } from '../../src/messages/statuses';
import { startStack } from './stack';
import type { Stack } from './stack';

/**
 * SignalWire may call back before the proxy has recorded its answer to the send (the callback
 * races the create response). Either order must end in the same message row and the same
 * history rows. The recorder behind both listeners is wrapped so a test can hold back one
 * source's events and force the order; the simulator's steps have no delay.
 */

interface Hold {
  /** Resolves once an event of the held source is waiting. */
  arrived: Promise<void>;
  release(): void;
}

interface Gates {
  hold(source: EventSource): Hold;
  /** Proxy events fail instead of being recorded. */
  failProxy: boolean;
}

function gatedRecorder(inner: EventRecorder): EventRecorder & Gates {
  const held = new Map<EventSource, { arrived: () => void; released: Promise<void> }>();
  return {
    failProxy: false,
    hold(source) {
      let arrived!: () => void;
      let release!: () => void;
      const arrivedPromise = new Promise<void>((resolve) => (arrived = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      held.set(source, { arrived, released });
      return {
        arrived: arrivedPromise,
        release: () => {
          held.delete(source);
          release();
        },
      };
    },
    async record(event) {
      const gate = held.get(event.source);
      if (gate) {
        gate.arrived();
        await gate.released;
      }
      if (event.source === 'proxy' && this.failProxy) throw new Error('store unavailable');
      return inner.record(event);
    },
    drain: () => inner.drain(),
  };
}

let stack: Stack;
let recorder: ReturnType<typeof gatedRecorder>;

beforeAll(async () => {
  stack = await startStack({
    simulator: { stepDelayMs: 0 },
    recorder: (deps) => (recorder = gatedRecorder(directRecorder(deps.db))),
  });
});

afterAll(async () => {
  await stack.close();
});

afterEach(() => {
  recorder.failProxy = false;
});

/** What must not depend on arrival order: the row without its id, ref and times. */
function comparable(message: MessageDto) {
  const {
    id: _id,
    ref,
    created_at: _created,
    updated_at: _updated,
    last_event_at: _last,
    history,
    ...row
  } = message;
  expect(ref).toEqual(expect.any(String));
  const rows = (history ?? [])
    .map(({ status, raw_status, error_code, source }) =>
      JSON.stringify([status, raw_status, error_code, source]),
    )
    .sort();
  return { row, history: rows };
}

function sources(message: MessageDto): string[] {
  return (message.history ?? []).map((h) => `${h.source}:${h.raw_status}`);
}

describe.each(['cxml', 'native'] as const)('%s API', (api) => {
  const to = api === 'cxml' ? '+15557771000' : '+15558881000';
  const options = { body: 'order test', statusCallback: 'https://app.example.com/cb' };

  it('When every callback is recorded before the proxy records its answer, then the message ends as when the proxy is first', async () => {
    // Callback first: the proxy's event waits until the simulator has delivered everything.
    const proxyHold = recorder.hold('proxy');
    const sending = stack.send(api, to, options);
    await proxyHold.arrived;
    await stack.sim.waitForIdle();
    proxyHold.release();
    const late = (await stack.message(await sending))!;
    expect(sources(late).at(-1)).toBe('proxy:queued');

    // Proxy first: callbacks wait until the send has been recorded and answered.
    const callbackHold = recorder.hold('callback');
    const firstId = await stack.send(api, to, options);
    callbackHold.release();
    await stack.sim.waitForIdle();
    const first = (await stack.message(firstId))!;
    expect(sources(first)[0]).toBe('proxy:queued');

    expect(comparable(late)).toEqual(comparable(first));
    expect(late).toMatchObject({
      status: 'delivered',
      sent_via_proxy: true,
      client_status_callback: 'https://app.example.com/cb',
      kind: 'sms',
    });
  });

  it('When the proxy cannot record an accepted send, then the client still gets it and the callbacks create the message', async () => {
    recorder.failProxy = true;
    const id = await stack.send(api, to, options);
    await stack.sim.waitForIdle();
    const message = (await stack.message(id))!;
    expect(message).toMatchObject({ id, status: 'delivered', sent_via_proxy: false });
    expect(message.history?.every((h) => h.source === 'callback')).toBe(true);
  });
});
