import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
let server: Server;
let origin: string;
beforeAll(async () => {
  t = await createTestApp();
  server = t.publicApp.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

interface Planned {
  messageId: string;
  send: () => Promise<Response>;
  key: string;
}

function cxmlCallback(messageId: string, status: string, errorCode?: string): Planned {
  const fields: Record<string, string> = {
    MessageSid: messageId,
    MessageStatus: status,
    AccountSid: 'acct',
    To: '+15550000002',
  };
  if (errorCode) fields.ErrorCode = errorCode;
  const path = '/callbacks/cxml';
  const signature = signFormParams(
    TEST_SIGNING_KEY,
    TEST_PUBLIC_BASE_URL + path,
    Object.entries(fields),
  );
  return {
    messageId,
    key: `${messageId}|${status}|${errorCode ?? ''}`,
    send: () =>
      fetch(origin + path, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-signalwire-signature': signature,
        },
        body: new URLSearchParams(fields).toString(),
      }),
  };
}

function nativeCallback(messageId: string, status: string, timestamp: string): Planned {
  const body = JSON.stringify({
    id: messageId,
    status,
    timestamp,
    error_code: null,
    to: '+15550000002',
  });
  const path = '/callbacks/native';
  return {
    messageId,
    key: `${messageId}|${status}|${timestamp}`,
    send: () =>
      fetch(origin + path, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-signalwire-signature': signJsonBody(
            TEST_SIGNING_KEY,
            TEST_PUBLIC_BASE_URL + path,
            body,
          ),
        },
        body,
      }),
  };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

test('When hundreds of callbacks for the same messages arrive at once, shuffled and duplicated, then each ends in its final status with one row per distinct event', async () => {
  const expected = new Map<string, { status: string; errorCode: string | null }>();
  const planned: Planned[] = [];
  for (let i = 0; i < 30; i++) {
    const id = randomUUID();
    const fails = i % 3 === 0;
    for (const status of ['queued', 'sending', 'sent', fails ? 'undelivered' : 'delivered']) {
      planned.push(cxmlCallback(id, status, status === 'undelivered' ? '30003' : undefined));
    }
    expected.set(id, {
      status: fails ? 'undelivered' : 'delivered',
      errorCode: fails ? '30003' : null,
    });
  }
  for (let i = 0; i < 30; i++) {
    const id = randomUUID();
    const steps = ['queued', 'initiated', 'sent', 'delivered', 'read'];
    steps.forEach((status, n) =>
      planned.push(nativeCallback(id, status, `2026-11-01T10:00:0${n}Z`)),
    );
    expected.set(id, { status: 'read', errorCode: null });
  }
  // Every event is sent one to three times, the copies spread through the shuffled stream.
  const stream = shuffle(planned.flatMap((p, i) => Array.from({ length: 1 + (i % 3) }, () => p)));
  expect(stream.length).toBeGreaterThan(300);

  // Like SignalWire, a sender tries up to three times: a 503 under this burst is back-pressure
  // (nothing was acknowledged), never a lost event.
  const deliver = async (p: Planned): Promise<number> => {
    let status = 0;
    for (let attempt = 1; attempt <= 3; attempt++) {
      status = (await p.send()).status;
      if (status !== 503) break;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
    return status;
  };
  const statuses = await Promise.all(stream.map(deliver));
  expect(statuses.filter((s) => s !== 200)).toEqual([]);

  const rows = await t.database.db
    .selectFrom('status_events')
    .select(['message_id'])
    .where('message_id', 'in', [...expected.keys()])
    .execute();
  expect(rows).toHaveLength(new Set(planned.map((p) => p.key)).size);

  const messages = await t.database.db
    .selectFrom('messages')
    .select(['id', 'status', 'error_code', 'conflict'])
    .where('id', 'in', [...expected.keys()])
    .execute();
  expect(messages).toHaveLength(expected.size);
  for (const message of messages) {
    expect({
      id: message.id,
      status: message.status,
      errorCode: message.error_code,
      conflict: message.conflict,
    }).toEqual({
      id: message.id,
      ...expected.get(message.id),
      conflict: false,
    });
  }
});
