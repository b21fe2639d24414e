import { randomUUID, timingSafeEqual } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import type { Express, NextFunction, Request, Response } from 'express';
import pino from 'pino';
import type { Logger } from 'pino';
import { SIMULATOR_SIGNING_KEY } from '../config';
import { maskUrlTokens } from '../http/request-log';
import { parseBasicAuth } from '../signalwire/basic-auth';
import { countSegments } from '../signalwire/segments';
import {
  callbackUrlProblem,
  COMPAT_CODES,
  compatError,
  messageKind,
  nativeError,
  parseCompatCreate,
  parseNativeCreate,
} from '../signalwire/send-rules';
import type { ApiFailure, CompatErrorBody, NativeErrorBody } from '../signalwire/send-rules';
import { buildDelivery, deliver } from './callback-delivery';
import type { CallbackDelivery, DeliveryPolicy } from './callback-delivery';
import { addMessageReads } from './message-lists';
import {
  toApplicationResource,
  toCompatResource,
  toMessageLog,
  toNativeResource,
} from './message-resources';
import type { SimulatedApplication, SimulatedMessage } from './message-resources';
import { isProgress, scenarioFor, scenarioSteps } from './scenarios';
import type { SimulatorApi } from './scenarios';

/**
 * A fake SignalWire space (DESIGN §8): both create endpoints with Basic auth, the seeds'
 * validation and error shapes, provider-shaped 201 bodies, then signed status callbacks that
 * follow the scenario picked by the destination number (see scenarios.ts). Lists, the Media
 * subresource and deletions are in message-lists.ts.
 *
 * Compatibility routes are served under `/api/laml/2010-04-01/…` (the documented base URL) and
 * under `/2010-04-01/…`, the path the official `@signalwire/compatibility-api` SDK actually
 * requests (it inherits twilio-node's `2010-04-01/Accounts/…` paths and only swaps the host).
 */

export interface SimulatorOptions {
  /** Signs every callback. Defaults to the development key the service trusts by default. */
  signingKey?: string;
  /** When set, only this pair authenticates; otherwise any non-empty Basic pair does. */
  credentials?: { projectId: string; token: string };
  logger?: Logger;
  /** Pause between scenario steps. Tests pass 0–5. */
  stepDelayMs?: number;
  /** Attempts per callback; SignalWire tries 3 times then drops it. */
  maxAttempts?: number;
  retryBackoffMs?: number;
  /** Per attempt; SignalWire allows 2 s to connect and 5 s to read. */
  callbackTimeoutMs?: number;
  /** Oldest messages and deliveries are forgotten beyond this, so load tests stay bounded. */
  maxStored?: number;
  /**
   * A send naming a known cXML Application reports to the Application's message status
   * callback, its own StatusCallback ignored, as Twilio documents it. SignalWire documents no
   * precedence; by default the send's StatusCallback wins. Tests run both.
   */
  applicationCallbackFirst?: boolean;
  now?: () => Date;
}

export interface Simulator {
  app: Express;
  /** Every accepted message, oldest first. Live objects: their status moves as steps happen. */
  readonly messages: readonly SimulatedMessage[];
  /** Every callback, in the order it was first attempted, with its attempts and outcome. */
  readonly deliveries: readonly CallbackDelivery[];
  /** Resolves once every scheduled step and callback (retries included) has finished. */
  waitForIdle(): Promise<void>;
  /** Forgets messages and deliveries (pending scenarios keep running). */
  reset(): void;
  /** Cancels pending steps and retries; the app answers 503 afterwards. */
  dispose(): Promise<void>;
}

export interface RunningSimulator extends Simulator {
  /** Base URL to use as the space URL, e.g. `http://127.0.0.1:8090`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

const COMPAT_PREFIXES = ['/api/laml/2010-04-01', '/2010-04-01'];

/** The native API's paths answer in its errors shape; the rest in the compatibility one. */
const isNativePath = (path: string): boolean => path.toLowerCase().startsWith('/api/messaging');
// A sender is needed when a request names only a MessagingServiceSid: the simulated number
// group always picks this number.
const NUMBER_GROUP_SENDER = '+15550100001';

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** The compatibility API's limit on an Application's FriendlyName. */
const MAX_FRIENDLY_NAME = 64;

export function createSimulator(options: SimulatorOptions = {}): Simulator {
  const signingKey = options.signingKey ?? SIMULATOR_SIGNING_KEY;
  const logger = options.logger ?? pino({ enabled: false });
  const stepDelayMs = options.stepDelayMs ?? 30;
  const maxStored = options.maxStored ?? 10_000;
  const now = options.now ?? (() => new Date());
  const policy: DeliveryPolicy = {
    maxAttempts: options.maxAttempts ?? 3,
    retryBackoffMs: options.retryBackoffMs ?? 200,
    timeoutMs: options.callbackTimeoutMs ?? 5_000,
  };

  const messages: SimulatedMessage[] = [];
  const deliveries: CallbackDelivery[] = [];
  // cXML Applications by `${projectId}/${sid}`: a send naming one without a StatusCallback
  // reports to the Application's message status callback, as SignalWire does.
  const applications = new Map<string, SimulatedApplication>();
  const running = new Set<Promise<void>>();
  const shutdown = new AbortController();
  // Every pending step and callback listens on this one signal: hundreds at once is normal
  // (a load test, or the in-process upstream under traffic), not a leak.
  setMaxListeners(0, shutdown.signal);
  let deliverySeq = 0;
  let messageSeq = 0;

  function forgetAll(): void {
    messages.length = 0;
    deliveries.length = 0;
    applications.clear();
  }

  function remember<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > maxStored) list.splice(0, list.length - maxStored);
  }

  // --- Authentication -------------------------------------------------------------------------

  /** The project id of valid credentials, or null. */
  function projectOf(req: Request): string | null {
    const creds = parseBasicAuth(req.get('authorization'));
    if (!creds || creds.username === '' || creds.password === '') return null;
    if (options.credentials) {
      const ok =
        safeEqual(creds.username, options.credentials.projectId) &&
        safeEqual(creds.password, options.credentials.token);
      if (!ok) return null;
    }
    return creds.username;
  }

  function fail(res: Response, failure: ApiFailure<CompatErrorBody | NativeErrorBody>): void {
    if (failure.status === 401) res.set('WWW-Authenticate', 'Basic realm="SignalWire"');
    res.status(failure.status).json(failure.error);
  }

  const compatUnauthorized = (message: string) =>
    compatError(401, COMPAT_CODES.authentication, message);
  const nativeUnauthorized = () =>
    // SignalWire's REST APIs answer 401 in their `errors` envelope; type/code are our best
    // reading of that catalogue (no primary source shows this exact body).
    nativeError(401, 'authentication_error', 'unauthorized', 'Unauthorized');

  /** The native API's caller (Basic auth), or null once answered 401. */
  function nativeProject(req: Request, res: Response): string | null {
    const projectId = projectOf(req);
    if (projectId === null) fail(res, nativeUnauthorized());
    return projectId;
  }

  /**
   * Compatibility auth. A foreign AccountSid in the path is answered 401 (not 403): API
   * credentials are scoped to one project, so they do not authenticate the requested account,
   * which is what SignalWire and Twilio report (error 20003).
   */
  function compatProject(req: Request, res: Response): string | null {
    const projectId = projectOf(req);
    if (projectId === null) {
      fail(res, compatUnauthorized('Authentication Error - invalid username or password'));
      return null;
    }
    if (req.params['accountSid'] !== projectId) {
      fail(
        res,
        compatUnauthorized(
          'Authentication Error - the AccountSid in the URL does not match the credentials',
        ),
      );
      return null;
    }
    return projectId;
  }

  /** SignalWire's compatibility 404 for a resource that is not there. */
  function notFound(req: Request, res: Response): void {
    fail(
      res,
      compatError(404, COMPAT_CODES.notFound, `The requested resource ${req.path} was not found`),
    );
  }

  /** A project's Application by sid, whatever the sid's case. */
  const applicationOf = (projectId: string, sid: string) =>
    applications.get(`${projectId}/${sid.toLowerCase()}`);

  // --- Scenario execution ---------------------------------------------------------------------

  function schedule(m: SimulatedMessage): void {
    const steps = scenarioSteps(m.scenario, m.api, m.kind);
    const run = (async () => {
      for (const step of steps) {
        await sleep(step.delaySteps * stepDelayMs, undefined, { signal: shutdown.signal });
        const at = now();
        if (isProgress(m.status, step.status)) {
          m.status = step.status;
          m.errorCode = step.errorCode;
          m.errorMessage = step.errorMessage;
          m.updatedAt = at;
          if (step.status === 'sent' && !m.sentAt) m.sentAt = at;
        }
        if (m.statusCallback === null) continue;
        for (let copy = 1; copy <= step.copies; copy += 1) {
          deliverySeq += 1;
          const delivery = buildDelivery(deliverySeq, m, step, copy, signingKey, at);
          remember(deliveries, delivery);
          await deliver(delivery, policy, shutdown.signal);
          // The URL the proxy injected carries sw-status's callback token in its path.
          const log = { messageId: m.id, status: step.status, url: maskUrlTokens(delivery.url) };
          if (delivery.outcome === 'dropped') {
            logger.warn({ ...log, attempts: delivery.attempts }, 'status callback dropped');
          } else logger.debug(log, 'status callback delivered');
        }
      }
    })().catch((err: unknown) => {
      if (!shutdown.signal.aborted) logger.error({ err, messageId: m.id }, 'scenario failed');
    });
    running.add(run);
    void run.finally(() => running.delete(run));
  }

  function accept(m: SimulatedMessage): void {
    remember(messages, m);
    logger.info(
      { messageId: m.id, api: m.api, to: m.to, scenario: m.scenario, kind: m.kind },
      'simulated message queued',
    );
    schedule(m);
  }

  function newMessage(
    api: SimulatorApi,
    fields: Omit<
      SimulatedMessage,
      | 'id'
      | 'seq'
      | 'mediaSids'
      | 'api'
      | 'numSegments'
      | 'kind'
      | 'scenario'
      | 'status'
      | 'errorCode'
      | 'errorMessage'
      | 'createdAt'
      | 'updatedAt'
      | 'sentAt'
    > & { sendAsMms: boolean },
  ): SimulatedMessage {
    const at = now();
    const { sendAsMms, ...rest } = fields;
    messageSeq += 1;
    return {
      ...rest,
      id: randomUUID(),
      seq: messageSeq,
      mediaSids: fields.media.map(() => randomUUID()),
      api,
      kind: messageKind(fields.media, sendAsMms),
      numSegments: countSegments(fields.body).segments,
      scenario: scenarioFor(fields.to),
      status: 'queued',
      errorCode: null,
      errorMessage: null,
      createdAt: at,
      updatedAt: at,
      sentAt: null,
    };
  }

  // --- Routes ---------------------------------------------------------------------------------

  const app = express();
  app.disable('x-powered-by');
  app.use((_req, res, next) => {
    if (shutdown.signal.aborted) {
      res.status(503).json({ error: 'simulator is shutting down' });
      return;
    }
    next();
  });
  // A path whose percent-escapes do not decode (`…/Messages/%E0%A4%A.json`) names no resource:
  // refused as such, in the API's shape, before its body is read. Left to the router, the
  // failed decoding of a parameter reached the error handler below as if the body were at fault.
  app.use((req, res, next) => {
    try {
      decodeURIComponent(req.path);
    } catch {
      const message = `The request path ${req.path} is not valid percent-encoding`;
      fail(
        res,
        isNativePath(req.path)
          ? nativeError(400, 'invalid_request_error', 'invalid_parameter', message)
          : compatError(400, COMPAT_CODES.invalidArgument, message),
      );
      return;
    }
    next();
  });
  app.use(express.urlencoded({ extended: false, limit: '1mb' }));
  // Not strict: any JSON text parses, so that a native create of `null` or `"x"` is refused by
  // the create's own rules (422 "must be a JSON object", as `[]` is), not as unparsable.
  app.use(express.json({ limit: '1mb', strict: false }));

  const compatCreate = (req: Request, res: Response): void => {
    const projectId = compatProject(req, res);
    if (projectId === null) return;
    const parsed = parseCompatCreate((req.body ?? {}) as Record<string, unknown>);
    if (!parsed.ok) {
      fail(res, parsed);
      return;
    }
    const v = parsed.value;
    const application =
      v.applicationSid === null ? undefined : applicationOf(projectId, v.applicationSid);
    const m = newMessage('cxml', {
      projectId,
      from: v.from ?? NUMBER_GROUP_SENDER,
      to: v.to,
      body: v.body ?? '',
      media: v.mediaUrls,
      sendAsMms: v.sendAsMms,
      messagingServiceSid: v.messagingServiceSid,
      statusCallback:
        options.applicationCallbackFirst && application
          ? (application.messageStatusCallback ?? null)
          : (v.statusCallback ?? application?.messageStatusCallback ?? null),
      customVariables: {},
    });
    res.status(201).json(toCompatResource(m));
    accept(m);
  };

  const compatMessageOf = (req: Request, res: Response): SimulatedMessage | undefined => {
    const projectId = compatProject(req, res);
    if (projectId === null) return undefined;
    const m = messages.find(
      (x) => x.api === 'cxml' && x.id === req.params['sid'] && x.projectId === projectId,
    );
    if (!m) notFound(req, res);
    return m;
  };

  const compatFetch = (req: Request, res: Response): void => {
    const m = compatMessageOf(req, res);
    if (m) res.json(toCompatResource(m));
  };

  // The compatibility update: redaction only (an empty Body), as the native PATCH below.
  const compatUpdate = (req: Request, res: Response): void => {
    const m = compatMessageOf(req, res);
    if (!m) return;
    if ((req.body as Record<string, unknown> | undefined)?.['Body'] !== '') {
      fail(res, compatError(400, COMPAT_CODES.invalidArgument, 'Body may only be emptied'));
      return;
    }
    m.body = '';
    res.json(toCompatResource(m));
  };

  // cXML Applications: create and fetch, enough for a send's ApplicationSid to mean something.
  const applicationCreate = (req: Request, res: Response): void => {
    const projectId = compatProject(req, res);
    if (projectId === null) return;
    const fields = (req.body ?? {}) as Record<string, unknown>;
    const text = (name: string): string | null => {
      const value = fields[name];
      return typeof value === 'string' && value !== '' ? value : null;
    };
    const callback = text('MessageStatusCallback') ?? text('SmsStatusCallback');
    if (callback !== null && callbackUrlProblem(callback) !== null) {
      fail(
        res,
        compatError(400, COMPAT_CODES.invalidArgument, 'The status callback URL is invalid'),
      );
      return;
    }
    const friendlyName = text('FriendlyName') ?? '';
    // Each Application is held for the process's life: a name up to the body limit would let
    // a caller pin a megabyte apiece. 64 characters is the compatibility API's own limit.
    if (friendlyName.length > MAX_FRIENDLY_NAME) {
      fail(
        res,
        compatError(
          400,
          COMPAT_CODES.invalidArgument,
          `FriendlyName must be at most ${MAX_FRIENDLY_NAME} characters`,
        ),
      );
      return;
    }
    const at = now();
    const application: SimulatedApplication = {
      sid: randomUUID(),
      projectId,
      friendlyName,
      messageStatusCallback: callback,
      createdAt: at,
    };
    applications.set(`${projectId}/${application.sid}`, application);
    // Bounded like the messages (a Map iterates in insertion order: the oldest go first).
    for (const key of applications.keys()) {
      if (applications.size <= maxStored) break;
      applications.delete(key);
    }
    res.status(201).json(toApplicationResource(application));
  };

  const applicationFetch = (req: Request, res: Response): void => {
    const projectId = compatProject(req, res);
    if (projectId === null) return;
    const application = applicationOf(projectId, String(req.params['sid']));
    if (!application) {
      notFound(req, res);
      return;
    }
    res.json(toApplicationResource(application));
  };

  for (const prefix of COMPAT_PREFIXES) {
    app.post(`${prefix}/Accounts/:accountSid/Messages{.json}`, compatCreate);
    app.get(`${prefix}/Accounts/:accountSid/Messages/:sid{.json}`, compatFetch);
    app.post(`${prefix}/Accounts/:accountSid/Messages/:sid{.json}`, compatUpdate);
    app.post(`${prefix}/Accounts/:accountSid/Applications{.json}`, applicationCreate);
    app.get(`${prefix}/Accounts/:accountSid/Applications/:sid{.json}`, applicationFetch);
  }
  // Lists, the Media subresource and deletions (message-lists.ts).
  addMessageReads(app, COMPAT_PREFIXES, {
    messages,
    compatProject,
    nativeProject,
    notFound,
    fail,
  });

  app.post('/api/messaging/messages', (req: Request, res: Response) => {
    const projectId = nativeProject(req, res);
    if (projectId === null) return;
    const parsed = parseNativeCreate(req.body);
    if (!parsed.ok) {
      fail(res, parsed);
      return;
    }
    const v = parsed.value;
    const m = newMessage('native', {
      projectId,
      from: v.from,
      to: v.to,
      body: v.body ?? '',
      media: v.media,
      sendAsMms: v.sendAsMms,
      messagingServiceSid: null,
      statusCallback: v.statusCallback,
      customVariables: v.customVariables,
    });
    res.status(201).json(toNativeResource(m));
    accept(m);
  });

  // Redaction (SignalWire's update_message): the body may only be emptied, and only once the
  // message is past `queued`/`initiated`; the answer is the message resource, which echoes the
  // status callback the send was given.
  app.patch('/api/messaging/messages/:id', (req: Request, res: Response) => {
    const m = nativeMessageOf(req, res, 'Message not found');
    if (!m) return;
    const fields = (req.body ?? {}) as Record<string, unknown>;
    if (fields['body'] !== '') {
      fail(res, nativeError(422, 'validation_error', 'invalid_body', 'body may only be ""'));
      return;
    }
    if (m.status === 'queued' || m.status === 'initiated') {
      fail(res, nativeError(422, 'validation_error', 'in_progress', 'Message is in progress'));
      return;
    }
    m.body = '';
    res.json(toNativeResource(m));
  });

  // Message logs: what a sweep of native messages reads (DESIGN §8, §11). The true state.
  app.get('/api/messaging/logs/:id', (req: Request, res: Response) => {
    const m = nativeMessageOf(req, res, 'Message log not found');
    if (m) res.json(toMessageLog(m));
  });

  /** The project's message the path names, or undefined once the failure is answered. */
  function nativeMessageOf(
    req: Request,
    res: Response,
    notFound: string,
  ): SimulatedMessage | undefined {
    const projectId = nativeProject(req, res);
    if (projectId === null) return undefined;
    const m = messages.find((x) => x.id === req.params['id'] && x.projectId === projectId);
    if (!m) fail(res, nativeError(404, 'invalid_request_error', 'not_found', notFound));
    return m;
  }

  // Debug view for people and tests; unauthenticated because the simulator is a local tool.
  app.get('/__simulator/messages', (_req, res) => {
    res.json({ messages, deliveries });
  });
  app.delete('/__simulator/messages', (_req, res) => {
    forgetAll();
    res.status(204).end();
  });

  // Everything the simulator does not serve (Application lists, other resources…): a 404 in
  // the API's own shape, as SignalWire answers a resource it does not know, so that a SignalWire client
  // pointed at the local stack reports a 404 rather than failing on Express's HTML page.
  app.use((req: Request, res: Response) => {
    if (isNativePath(req.path)) {
      fail(
        res,
        nativeError(
          404,
          'invalid_request_error',
          'not_found',
          `The requested resource ${req.path} was not found`,
        ),
      );
    } else notFound(req, res);
  });

  // Body-parser failures (malformed JSON or form, too large) in the API's own shape.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const status = (err as { status?: number }).status;
    const code = typeof status === 'number' && status >= 400 && status < 500 ? status : 500;
    const message = code === 500 ? 'Internal error' : 'The request body could not be parsed';
    if (code === 500) logger.error({ err }, 'simulator request failed');
    if (isNativePath(req.path)) {
      fail(res, nativeError(code, 'invalid_request_error', 'invalid_parameter', message));
    } else {
      fail(res, compatError(code, COMPAT_CODES.invalidArgument, message));
    }
  });

  return {
    app,
    messages,
    deliveries,
    async waitForIdle() {
      while (running.size > 0) await Promise.allSettled([...running]);
    },
    reset: forgetAll,
    async dispose() {
      shutdown.abort();
      while (running.size > 0) await Promise.allSettled([...running]);
    },
  };
}

export interface StartSimulatorOptions extends SimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
}

/** Starts a simulator on a real port. `close()` cancels pending callbacks and stops listening. */
export async function startSimulator(
  options: StartSimulatorOptions = {},
): Promise<RunningSimulator> {
  const sim = createSimulator(options);
  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = sim.app.listen(options.port ?? 0, host, (err?: Error) =>
      err ? reject(err) : resolve(s),
    );
  });
  const { port } = server.address() as AddressInfo;
  // A wildcard bind is reachable on loopback; an IPv6 literal needs brackets in a URL.
  const urlHost =
    host === '0.0.0.0'
      ? '127.0.0.1'
      : host === '::'
        ? '[::1]'
        : host.includes(':')
          ? `[${host}]`
          : host;
  return {
    ...sim,
    // Getters would be lost by the spread: keep the live arrays themselves.
    messages: sim.messages,
    deliveries: sim.deliveries,
    url: `http://${urlHost}:${port}`,
    port,
    async close() {
      await sim.dispose();
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      });
    },
  };
}
