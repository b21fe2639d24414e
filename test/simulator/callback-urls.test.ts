import type { AddressInfo } from 'node:net';
import express from 'express';
import { RestClient } from '@signalwire/compatibility-api';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { closeServer, listen } from './support';

const PROJECT = 'b2c3d4e5-f6a7-4901-bcde-f12345678901';
const AUTH = basicAuthHeader(PROJECT, 'PTreviewtoken');

/**
 * Where the simulator delivers a status callback, and what it signs: SignalWire follows up to
 * three redirects of a callback (SIGNALWIRE.md), and a callback URL's fragment (its #rt=/#ct=
 * timeouts) is never sent — so never signed: the app checks the signature against the URL it
 * was called at, as the service's relay signs (src/relay/relay-request.ts).
 */

let sim: RunningSimulator;

/** A send whose callbacks go to `statusCallback` (To ending 0007: queued, then sent). */
async function sendWithCallback(statusCallback: string): Promise<void> {
  const res = await fetch(`${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`, {
    method: 'POST',
    headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      To: '+15551230007',
      From: '+15559876543',
      Body: 'hi',
      StatusCallback: statusCallback,
    }).toString(),
  });
  expect(res.status).toBe(201);
}

afterEach(async () => {
  await sim?.close();
});

test('When a status callback URL answers 307 to another URL, then the simulator follows it like SignalWire (up to 3 redirects) and the callback is delivered', async () => {
  const received: string[] = [];
  const app = express();
  app.use(express.raw({ type: () => true }));
  app.post('/old', (_req, res) => {
    received.push('old');
    res.redirect(307, '/new');
  });
  app.post('/new', (_req, res) => {
    received.push('new');
    res.status(204).end();
  });
  const receiver = await listen(app);
  const { port } = receiver.address() as AddressInfo;
  try {
    sim = await startSimulator({ stepDelayMs: 1, retryBackoffMs: 1, callbackTimeoutMs: 15_000 });
    await sendWithCallback(`http://127.0.0.1:${port}/old`);
    await sim.waitForIdle();
    // SIGNALWIRE.md: "tries a status callback 3 times in all (2 s connect, 5 s read timeouts,
    // up to 3 redirects)".
    expect(sim.deliveries.map((d) => [d.status, d.outcome])).toEqual([
      ['queued', 'delivered'],
      ['sent', 'delivered'],
    ]);
    expect(received.filter((r) => r === 'new')).toHaveLength(2);
  } finally {
    await closeServer(receiver);
  }
});

test('When a status callback URL keeps redirecting, then each attempt follows three redirects and no more, and the callback is dropped after its three attempts', async () => {
  let asked = 0;
  const app = express();
  app.use(express.raw({ type: () => true }));
  app.post('/loop', (_req, res) => {
    asked += 1;
    res.redirect(307, '/loop');
  });
  const receiver = await listen(app);
  const { port } = receiver.address() as AddressInfo;
  try {
    sim = await startSimulator({ stepDelayMs: 1, retryBackoffMs: 1, callbackTimeoutMs: 15_000 });
    await sendWithCallback(`http://127.0.0.1:${port}/loop`);
    await sim.waitForIdle();
    expect(sim.deliveries.map((d) => [d.status, d.outcome, d.attempts.length])).toEqual([
      ['queued', 'dropped', 3],
      ['sent', 'dropped', 3],
    ]);
    expect(sim.deliveries[0]!.attempts[0]!.statusCode).toBe(307);
    // Two callbacks × three attempts × (the URL and three redirects).
    expect(asked).toBe(2 * 3 * 4);
  } finally {
    await closeServer(receiver);
  }
});

test("When a StatusCallback carries a #rt= timeout fragment, then the callback is signed for the URL the app receives (as the service's relay signs it), so validateRequest passes", async () => {
  // The fragment is accepted on purpose (send-rules callbackUrlProblem: SignalWire's #ot=/#rt=/
  // #tt= overrides) and never sent in the request.
  const seen: Array<{ url: string; signature: string; params: Record<string, string> }> = [];
  const app = express();
  app.use(express.urlencoded({ extended: false }));
  let base = '';
  app.post('/cb', (req, res) => {
    seen.push({
      url: `${base}${req.originalUrl}`,
      signature: req.get('x-signalwire-signature') ?? '',
      params: req.body as Record<string, string>,
    });
    res.status(200).end();
  });
  const receiver = await listen(app);
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  try {
    sim = await startSimulator({ stepDelayMs: 1 });
    await sendWithCallback(`${base}/cb?tenant=acme#rt=3000`);
    await sim.waitForIdle();
    expect(seen).toHaveLength(2);
    // The app validates against the URL it was called at.
    expect(
      seen.map((c) =>
        RestClient.validateRequest(SIMULATOR_SIGNING_KEY, c.signature, c.url, c.params),
      ),
    ).toEqual([true, true]);
  } finally {
    await closeServer(receiver);
  }
});
