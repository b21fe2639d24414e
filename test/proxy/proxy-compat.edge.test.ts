import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { startTappedProxy } from './support';
import type { TappedProxy, UpstreamTap } from './support';

/**
 * Edge cases of the compatibility create that a JSON client can reach: what goes upstream must
 * be what the rules validated and what the service records, whatever shape the JSON takes.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTcompatedgetesttoken';
const FROM = '+15551234567';
const AUTH = basicAuthHeader(PROJECT, TOKEN);
const COMPAT_PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;

let sim: RunningSimulator;
let stack: TappedProxy;
let tap: UpstreamTap;
let t: TestApp;

beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  stack = await startTappedProxy({ forwardTo: sim.url });
  ({ tap, t } = stack);
});

afterAll(async () => {
  await stack.close();
  await sim.close();
});

describe('a JSON create that gives a single-valued field as a list', () => {
  it('When To, From and Body are JSON arrays, then only their first values go upstream, the ones validated and recorded, and MediaUrl stays a list', async () => {
    const before = tap.requests.length;
    const res = await request(t.internalApp)
      .post(COMPAT_PATH)
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send(
        JSON.stringify({
          // Only the first of each is checked by the rules: the second To is no number at all.
          To: ['+15557654000', 'not-a-number'],
          From: [FROM, '+15550000000'],
          Body: ['first body', 'second body'],
          MediaUrl: ['https://example.com/1.png', 'https://example.com/2.png'],
        }),
      );

    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    const sent = JSON.parse(tap.requests.at(-1)!.body) as Record<string, unknown>;
    expect(sent).toMatchObject({
      To: '+15557654000',
      From: FROM,
      Body: 'first body',
      MediaUrl: ['https://example.com/1.png', 'https://example.com/2.png'],
    });
    const answer = JSON.parse(res.text) as { sid: string };
    const stored = await request(t.internalApp)
      .get(`/v1/messages/${answer.sid}`)
      .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
    expect(stored.body).toMatchObject({ to: '+15557654000', from: FROM });
  });
});

describe('a Body far over the character limit', () => {
  /** The lengths of the strings iterated character by character while `work` runs. */
  async function iteratedLengths(work: () => Promise<void>): Promise<number[]> {
    const lengths: number[] = [];
    const iterate = String.prototype[Symbol.iterator];
    const spy = jest.spyOn(String.prototype, Symbol.iterator).mockImplementation(function (
      this: string,
    ) {
      lengths.push(this.length);
      return iterate.call(this);
    });
    try {
      await work();
    } finally {
      spy.mockRestore();
    }
    return lengths;
  }

  it('When a compatibility create carries a Body of 250,000 characters, then it gets 21617 without counting them', async () => {
    const before = tap.requests.length;
    let status = 0;
    let code = 0;
    const lengths = await iteratedLengths(async () => {
      const res = await request(t.internalApp)
        .post(COMPAT_PATH)
        .set('Authorization', AUTH)
        .type('form')
        .send(
          new URLSearchParams({
            To: '+15557654000',
            From: FROM,
            Body: 'a'.repeat(250_000),
          }).toString(),
        );
      ({ status } = res);
      ({ code } = res.body as { code: number });
    });
    expect({ status, code }).toEqual({ status: 400, code: 21617 });
    // A character count is needed only between 1,600 and 3,200 UTF-16 units.
    expect(Math.max(0, ...lengths)).toBeLessThanOrEqual(3200);
    expect(tap.requests).toHaveLength(before);
  });

  it('When a native create carries a body of 60,000 emoji, then it gets 422 without counting them', async () => {
    const before = tap.requests.length;
    let status = 0;
    let text = '';
    const lengths = await iteratedLengths(async () => {
      const res = await request(t.internalApp)
        .post('/api/messaging/messages')
        .set('Authorization', AUTH)
        .set('Content-Type', 'application/json')
        .send(JSON.stringify({ to: '+15557654000', from: FROM, body: '😀'.repeat(60_000) }));
      ({ status, text } = res);
    });
    expect(status).toBe(422);
    expect(text).toContain('Body is too long');
    expect(Math.max(0, ...lengths)).toBeLessThanOrEqual(3200);
    expect(tap.requests).toHaveLength(before);
  });
});
