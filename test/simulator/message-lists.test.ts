import { randomUUID } from 'node:crypto';
import { RestClient } from '@signalwire/compatibility-api';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';

/**
 * The reads an app's SignalWire client makes besides fetching one message, against the
 * simulator alone: the compatibility Messages list (PageSize/PageToken paging, relative
 * `next_page_uri`, To/From/Status/DateSent filters), a message's Media subresource, deletions,
 * and the native message-log list (`page_size`/`page_token`, absolute `links`). Each test uses
 * its own project, so that what it lists is only what it sent.
 */

const TOKEN = 'PTlisttoken';
const FROM = '+15551234567';

let sim: RunningSimulator;
beforeAll(async () => {
  // Steps an hour apart: every message stays `queued` unless a test says otherwise.
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
});
afterAll(() => sim.close());

function sdkClient(projectId: string) {
  const client = RestClient(projectId, TOKEN, { signalwireSpaceUrl: new URL(sim.url).host });
  (client.api as unknown as { baseUrl: string }).baseUrl = sim.url;
  return client;
}

const compat = (projectId: string): string =>
  `${sim.url}/api/laml/2010-04-01/Accounts/${projectId}/Messages`;

async function getJson(
  url: string,
  projectId: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    ...init,
    headers: { authorization: basicAuthHeader(projectId, TOKEN) },
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as never) };
}

/** Sends `count` messages (To ending 1000, 1001, …) and returns their sids, oldest first. */
async function sendMany(projectId: string, count: number): Promise<string[]> {
  const sids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const sent = await sdkClient(projectId).messages.create({
      from: FROM,
      to: `+1555123${1000 + i}`,
      body: `message ${i}`,
    });
    sids.push(sent.sid);
  }
  return sids;
}

/** The SDK's page, as its JavaScript has it (its typings leave out these members). */
interface SdkPage {
  instances: Array<{ sid: string }>;
  nextPageUrl: string | undefined;
  nextPage(): Promise<SdkPage>;
}

describe('the compatibility Messages list', () => {
  test('When a project lists its messages, then the page has SignalWire’s fields and the messages newest first', async () => {
    const project = randomUUID();
    const sids = await sendMany(project, 3);
    await sendMany(randomUUID(), 1);

    const { status, body } = await getJson(`${compat(project)}.json`, project);

    expect(status).toBe(200);
    expect(Object.keys(body)).toEqual([
      'uri',
      'first_page_uri',
      'next_page_uri',
      'previous_page_uri',
      'page',
      'page_size',
      'messages',
    ]);
    expect(body).toMatchObject({ page: 0, page_size: 50, next_page_uri: null });
    const messages = body['messages'] as Array<Record<string, unknown>>;
    expect(messages.map((m) => m['sid'])).toEqual([...sids].reverse());
    expect(messages[0]).toMatchObject({ account_sid: project, body: 'message 2' });
  });

  test('When a list is walked page by page, then each next_page_uri is relative and the pages hold every message once', async () => {
    const project = randomUUID();
    const sids = await sendMany(project, 5);

    const seen: string[] = [];
    const nextUris: string[] = [];
    let page = (await sdkClient(project).messages.page({ pageSize: 2 })) as unknown as SdkPage;
    for (;;) {
      seen.push(...page.instances.map((m) => m.sid));
      if (!page.nextPageUrl) break;
      nextUris.push(page.nextPageUrl);
      page = await page.nextPage();
    }

    expect(seen).toEqual([...sids].reverse());
    expect(nextUris).toHaveLength(2);
    // The SDK resolves the relative URI against the base URL it was given: here, the simulator.
    for (const uri of nextUris)
      expect(uri.startsWith(`${sim.url}/api/laml/2010-04-01/`)).toBe(true);
  });

  test('When the SDK lists with a limit, then it follows the pages up to that limit', async () => {
    const project = randomUUID();
    const sids = await sendMany(project, 4);

    const listed = await sdkClient(project).messages.list({ limit: 3, pageSize: 2 });

    expect(listed.map((m) => m.sid)).toEqual([...sids].reverse().slice(0, 3));
  });

  test('When a page token names a message since deleted, then the walk goes on after it', async () => {
    const project = randomUUID();
    const sids = await sendMany(project, 3);
    const first = await getJson(`${compat(project)}.json?PageSize=1`, project);
    const next = String(first.body['next_page_uri']);
    expect(next.startsWith(`/api/laml/2010-04-01/Accounts/${project}/Messages.json?`)).toBe(true);
    await getJson(`${compat(project)}/${sids[2]}.json`, project, { method: 'DELETE' });

    const second = await getJson(`${sim.url}${next}`, project);

    expect((second.body['messages'] as Array<{ sid: string }>).map((m) => m.sid)).toEqual([
      sids[1],
    ]);
  });

  test('When the list is filtered by To, From or Status, then only matching messages are listed', async () => {
    const project = randomUUID();
    const sids = await sendMany(project, 3);
    const byTo = await sdkClient(project).messages.list({ to: '+15551231001' });
    const byFrom = await sdkClient(project).messages.list({ from: '+15550000000' });
    const queued = await sdkClient(project).messages.list({ status: 'queued' } as never);
    const delivered = await getJson(`${compat(project)}.json?Status=delivered`, project);

    expect(byTo.map((m) => m.sid)).toEqual([sids[1]]);
    expect(byFrom).toEqual([]);
    expect(queued).toHaveLength(3);
    expect(delivered.body['messages']).toEqual([]);
  });

  test('When the list is filtered by DateSent, then only messages sent that day (or before, or after) are listed', async () => {
    const project = randomUUID();
    const [sid] = await sendMany(project, 1);
    const held = sim.messages.find((m) => m.id === sid)!;
    held.sentAt = new Date('2026-03-17T22:26:57Z');
    const sids = async (query: string) =>
      (
        (await getJson(`${compat(project)}.json?${query}`, project)).body['messages'] as Array<{
          sid: string;
        }>
      ).map((m) => m.sid);

    expect(await sids('DateSent=2026-03-17')).toEqual([sid]);
    expect(await sids('DateSent=2026-03-18')).toEqual([]);
    expect(await sids(`${encodeURIComponent('DateSent<')}=2026-03-17`)).toEqual([sid]);
    expect(await sids(`${encodeURIComponent('DateSent<')}=2026-03-16`)).toEqual([]);
    expect(await sids(`${encodeURIComponent('DateSent>')}=2026-03-18`)).toEqual([]);
  });

  test('When the page size or a date is not one SignalWire takes, then the list answers 400', async () => {
    const project = randomUUID();
    const answers = await Promise.all(
      ['PageSize=0', 'PageSize=1001', 'DateSent=yesterday', 'PageToken=XY1'].map(
        async (q) => (await getJson(`${compat(project)}.json?${q}`, project)).status,
      ),
    );
    expect(answers).toEqual([400, 400, 400, 400]);
  });

  test('When another project’s AccountSid is in the path, then the list answers 401', async () => {
    const { status, body } = await getJson(`${compat(randomUUID())}.json`, randomUUID());
    expect({ status, code: body['code'] }).toEqual({ status: 401, code: 20003 });
  });
});

describe('deleting a message', () => {
  test('When a message is deleted, then the answer is 204 and it is no longer fetched nor listed', async () => {
    const project = randomUUID();
    const [sid] = await sendMany(project, 1);

    const removed = await sdkClient(project).messages(sid!).remove();
    const fetched = await sdkClient(project)
      .messages(sid!)
      .fetch()
      .then(
        () => 200,
        (e: { status?: number; code?: number }) => [e.status, e.code],
      );
    const listed = await sdkClient(project).messages.list();

    expect({ removed, fetched, listed }).toEqual({
      removed: true,
      fetched: [404, 20404],
      listed: [],
    });
  });

  test('When a message that does not exist is deleted, then the answer is 404 (20404)', async () => {
    const project = randomUUID();
    const { status, body } = await getJson(`${compat(project)}/${randomUUID()}.json`, project, {
      method: 'DELETE',
    });
    expect({ status, code: body['code'] }).toEqual({ status: 404, code: 20404 });
  });
});

describe('the Media subresource', () => {
  test('When the media of an MMS are listed, fetched and one removed, then each answer is SignalWire’s shape', async () => {
    const project = randomUUID();
    const client = sdkClient(project);
    const sent = await client.messages.create({
      from: FROM,
      to: '+15551230001',
      body: 'pic',
      mediaUrl: ['https://example.com/a.png', 'https://example.com/b.jpg?size=large'],
    });

    const media = await client.messages(sent.sid).media.list();
    const raw = await getJson(`${compat(project)}/${sent.sid}/Media.json`, project);
    const one = await client.messages(sent.sid).media(media[1]!.sid).fetch();
    await client.messages(sent.sid).media(media[0]!.sid).remove();
    const after = await client.messages(sent.sid).media.list();

    expect(media.map((m) => m.contentType)).toEqual(['image/png', 'image/jpeg']);
    expect(Object.keys((raw.body['media_list'] as object[])[0]!)).toEqual([
      'account_sid',
      'content_type',
      'date_created',
      'date_updated',
      'parent_sid',
      'sid',
      'uri',
    ]);
    expect(raw.body).toMatchObject({ page: 0, next_page_uri: null, previous_page_uri: null });
    expect(one).toMatchObject({ sid: media[1]!.sid, parentSid: sent.sid, accountSid: project });
    expect(after.map((m) => m.sid)).toEqual([media[1]!.sid]);
  });

  test('When a medium the message does not have is fetched, then the answer is 404', async () => {
    const project = randomUUID();
    const [sid] = await sendMany(project, 1);
    const { status } = await getJson(
      `${compat(project)}/${sid}/Media/${randomUUID()}.json`,
      project,
    );
    expect(status).toBe(404);
  });
});

describe('the native message-log list', () => {
  const logs = (query: string) => `${sim.url}/api/messaging/logs?${query}`;

  test('When logs are listed page by page, then links.next is absolute, on the host asked, and the pages hold every message once', async () => {
    const project = randomUUID();
    const compatSids = await sendMany(project, 2);
    const res = await fetch(`${sim.url}/api/messaging/messages`, {
      method: 'POST',
      headers: {
        authorization: basicAuthHeader(project, TOKEN),
        'content-type': 'application/json',
      },
      body: JSON.stringify({ from: FROM, to: '+15551230001', body: 'native' }),
    });
    const nativeId = ((await res.json()) as { id: string }).id;

    const seen: Array<{ id: string; source: string }> = [];
    const nexts: string[] = [];
    let url: string | undefined = logs('page_size=2');
    while (url) {
      const page = await getJson(url, project);
      expect(page.status).toBe(200);
      const body = page.body as {
        links: { self: string; first: string; next?: string };
        data: Array<{ id: string; source: string }>;
      };
      seen.push(...body.data);
      url = body.links.next;
      if (url) nexts.push(url);
    }

    expect(seen.map((l) => l.id)).toEqual([nativeId, ...[...compatSids].reverse()]);
    expect(seen.map((l) => l.source)).toEqual(['realtime_api', 'laml', 'laml']);
    expect(nexts).toHaveLength(1);
    expect(new URL(nexts[0]!).origin).toBe(sim.url);
    expect(new URL(nexts[0]!).searchParams.get('page_token')).toMatch(/^PA/);
  });

  test('When logs are listed by creation day, then only that day’s are listed', async () => {
    const project = randomUUID();
    const [sid] = await sendMany(project, 1);
    sim.messages.find((m) => m.id === sid)!.createdAt = new Date('2026-03-17T10:00:00Z');
    const ids = async (query: string) =>
      ((await getJson(logs(query), project)).body['data'] as Array<{ id: string }>).map(
        (l) => l.id,
      );

    expect(await ids('created_on=2026-03-17')).toEqual([sid]);
    expect(await ids('created_after=2026-03-18')).toEqual([]);
    expect(await ids('created_before=2026-03-17')).toEqual([sid]);
    expect(await ids('created_before=2026-03-16')).toEqual([]);
  });

  test('When the page size, token or a date is not one SignalWire takes, then the list answers 422 in the native errors shape', async () => {
    const project = randomUUID();
    const answers = await Promise.all(
      ['page_size=0', 'page_size=1001', 'page_token=nope', 'created_after=2026-3-1'].map(
        async (q) => {
          const { status, body } = await getJson(logs(q), project);
          return [status, (body['errors'] as Array<{ code: string }>)[0]?.code];
        },
      ),
    );
    expect(answers).toEqual(Array(4).fill([422, 'invalid_parameter']));
  });
});
