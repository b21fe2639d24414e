import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';

const PROJECT = 'b2c3d4e5-f6a7-4901-bcde-f12345678901';
const AUTH = basicAuthHeader(PROJECT, 'PTreviewtoken');

/**
 * The simulator holds what it is sent in memory, bounded by `maxStored` so that a long local
 * run or a load test stays bounded: cXML Applications too (a send naming one reports to its
 * callback), which the in-process simulator behind `npm start` keeps for the process's life.
 */

let sim: RunningSimulator;

afterEach(async () => {
  await sim?.close();
});

const applications = (): string =>
  `${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Applications`;

async function createApplication(name: string): Promise<Response> {
  return fetch(`${applications()}.json`, {
    method: 'POST',
    headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ FriendlyName: name }).toString(),
  });
}

async function fetchApplication(sid: string): Promise<number> {
  const res = await fetch(`${applications()}/${sid}.json`, { headers: { authorization: AUTH } });
  await res.arrayBuffer();
  return res.status;
}

test('When more cXML Applications are created than maxStored, then the oldest are forgotten and the newest kept', async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000, maxStored: 3 });
  const sids: string[] = [];
  for (let i = 0; i < 5; i += 1) {
    const res = await createApplication(`app ${i}`);
    expect(res.status).toBe(201);
    sids.push(((await res.json()) as { sid: string }).sid);
  }
  const statuses = await Promise.all(sids.map(fetchApplication));
  expect(statuses).toEqual([404, 404, 200, 200, 200]);
});

test('When the simulator is reset, then its Applications are forgotten with its messages', async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  const created = await createApplication('kept until reset');
  const { sid } = (await created.json()) as { sid: string };
  expect(await fetchApplication(sid)).toBe(200);
  sim.reset();
  expect(await fetchApplication(sid)).toBe(404);
});

test('When an Application’s FriendlyName is longer than 64 characters, then it is refused 400 in the compatibility shape', async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  expect((await createApplication('x'.repeat(64))).status).toBe(201);
  const res = await createApplication('x'.repeat(200_000));
  expect(res.status).toBe(400);
  expect(await res.json()).toMatchObject({ status: 400, code: 10000 });
});
