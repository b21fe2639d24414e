import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { READ_REPLICA_LAG_METRIC } from '../../src/db/read-replica-metrics';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { startReplicaStack } from './support/replica-stack';
import type { ReplicaStack } from './support/replica-stack';

/**
 * sw_status_read_replica_lag_seconds against a real hot standby (test/db/support/hot-standby.ts):
 * lists, stats and the feed answer 200 from a standby that is up to MAX_REPLICA_LAG_MS behind,
 * and the gauge is where an operator sees it. Replay is paused on the standby while the primary
 * takes a callback: the gauge grows with the time since, and falls to 0 once replay resumes.
 * An idle primary whose standby has replayed everything reads 0 however long nothing is written.
 */

jest.setTimeout(120_000);

let stack: ReplicaStack;
beforeAll(async () => {
  // Checked at every scrape (the primary's position sampled each time), to keep the test short.
  stack = await startReplicaStack({ reader: { checkEveryMs: 50 } });
}, 120_000);

afterAll(async () => {
  await stack?.standby.resumeReplay().catch(() => undefined);
  await stack?.close();
});

async function scrapedLag(): Promise<number> {
  const text = (await request(stack.t.internalApp).get('/metrics').expect(200)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${READ_REPLICA_LAG_METRIC} `));
  if (line === undefined) throw new Error(`${READ_REPLICA_LAG_METRIC} is not on /metrics`);
  return Number(line.split(' ')[1]);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The gauge once it meets `wanted`, scraped every 250 ms for up to 30 s. */
async function lagReaching(wanted: (lag: number) => boolean, what: string): Promise<number> {
  let lag = await scrapedLag();
  await eventually(
    async () => {
      lag = await scrapedLag();
      if (wanted(lag)) return true;
      await sleep(250);
      return false;
    },
    what,
    30_000,
  );
  return lag;
}

test('When the standby has replayed everything and nothing is written for seconds, then the lag reads 0', async () => {
  await stack.standby.caughtUp();
  await scrapedLag();
  await sleep(1_500);
  expect(await scrapedLag()).toBe(0);
  await sleep(1_500);
  expect(await scrapedLag()).toBe(0);
});

test('When the standby stops replaying while the primary takes a callback, then the lag grows with the time since and falls to 0 once it replays again, the list still answered meanwhile', async () => {
  await stack.standby.caughtUp();
  await scrapedLag();
  await stack.standby.pauseReplay();
  try {
    const id = randomUUID();
    expect((await postCxml(stack.t.publicApp, cxmlFields({ MessageSid: id }))).status).toBe(200);
    // The primary's position past the standby's is sampled at a check a scrape brings about, in
    // the background; on a loaded machine a scrape may still show the value before it. So the
    // gauge is read until it shows the time since (it stayed 0 without the gauge's sampling),
    // then until it has grown past that.
    const behind = await lagReaching((lag) => lag >= 1.5, 'the lag past 1.5 s');
    expect(behind).toBeLessThan(60);
    await lagReaching((lag) => lag > behind, `the lag growing past ${behind} s`);
    // Served from the standby with a 200 all the same (stale: it does not have the message).
    const list = await request(stack.t.internalApp)
      .get('/v1/messages')
      .auth(TEST_API_TOKEN, { type: 'bearer' });
    expect(list.status).toBe(200);
    expect(list.body.data.map((m: { id: string }) => m.id)).not.toContain(id);
  } finally {
    await stack.standby.resumeReplay();
  }
  await eventually(async () => (await scrapedLag()) === 0, 'the lag back to 0', 20_000);
});
