import type { IncomingMessage, ServerResponse } from 'node:http';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { buildApiDocument } from '../../src/openapi/api-document';
import type { OpenApiDocument } from '../../src/openapi/api-document';
import { OTHER_REFUSAL } from '../../src/openapi/api-docs';

/**
 * Every answer an API test gets is checked against the service's OpenAPI document, so the
 * document cannot drift from what the routes do: test/helpers/test-app.ts wraps the apps it
 * builds with `checkedAgainstOpenApi`, and test/helpers/openapi-setup.ts (jest's
 * setupFilesAfterEnv) fails the test in which an answer broke the document. A request to a
 * path and method the document does not describe (a 404 for a made-up path) is not checked.
 *
 * Checked: the status is one the operation declares (a refusal may fall to its `default`); every header the
 * document marks required for that status is there; a body comes with a content type declared
 * for that status; a JSON body validates against its schema.
 */

let document: OpenApiDocument | undefined;
const violations: string[] = [];

export function openApiDocument(): OpenApiDocument {
  document ??= buildApiDocument('test');
  return document;
}

export type Listener = 'public' | 'internal';

interface Operation {
  path: string;
  pattern: RegExp;
  responses: Record<
    string,
    {
      description?: string;
      content?: Record<string, unknown>;
      headers?: Record<string, { required?: boolean }>;
    }
  >;
  method: string;
  listeners: Listener[];
}

/** Which listener serves an operation: its own servers, else the document's. */
export function listenersOf(doc: OpenApiDocument, servers?: Array<{ url: string }>): Listener[] {
  // The internal listener's server is relative, the public one's names its port variable
  // (src/openapi/listeners.ts).
  return (servers ?? doc.servers ?? []).map((server): Listener =>
    server.url === '/' ? 'internal' : 'public',
  );
}

function operationsOf(doc: OpenApiDocument): Operation[] {
  const found: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    const pattern = new RegExp(
      `^${path
        .split(/(\{[^}]+\})/)
        .map((part) => (part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
        .join('')}$`,
    );
    for (const [method, operation] of Object.entries(item as Record<string, unknown>)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const { responses, servers } = operation as {
        responses: Operation['responses'];
        servers?: Array<{ url: string }>;
      };
      found.push({ path, pattern, responses, method, listeners: listenersOf(doc, servers) });
    }
  }
  // A literal path wins over a template (/v1/messages before /v1/messages/{id}).
  return found.sort((a, b) => a.path.split('{').length - b.path.split('{').length);
}

const escape = (segment: string) => segment.replace(/~/g, '~0').replace(/\//g, '~1');

/** One answer as the client got it; header names in lower case. */
export interface Answer {
  listener: Listener;
  method: string;
  url: string;
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

/** Says what is wrong with an answer under one document, or null. */
export type AnswerChecker = (answer: Answer) => string | null;

/**
 * A checker of answers against `doc`: the document the tests build (below), or the one a
 * running service serves at GET /openapi.json (test/api/openapi-live.test.ts).
 */
export function answerChecker(doc: OpenApiDocument): AnswerChecker {
  const operations = operationsOf(doc);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(structuredClone(doc) as object, 'openapi');
  const validators = new Map<string, ValidateFunction>();
  const validatorFor = (pointer: string): ValidateFunction => {
    let validate = validators.get(pointer);
    if (!validate) {
      validate = ajv.compile({ $ref: `openapi#${pointer}` });
      validators.set(pointer, validate);
    }
    return validate;
  };
  return ({ listener, method, url, status, headers, body }) => {
    const path = url.split('?')[0]!;
    const lower = method.toLowerCase();
    const operation = operations.find(
      (op) => op.method === lower && op.listeners.includes(listener) && op.pattern.test(path),
    );
    if (!operation) return null;
    const where = `${method} ${url} → ${status}`;
    const declared = operation.responses[String(status)]
      ? String(status)
      : fallsToDefault(operation.responses['default'], status)
        ? 'default'
        : undefined;
    const response = declared === undefined ? undefined : operation.responses[declared];
    if (!response) return `${where}: status ${status} is not in the document for ${operation.path}`;
    // A header the document promises is one a client may read without checking it is there.
    for (const [name, header] of Object.entries(response.headers ?? {})) {
      if (header.required && headers[name.toLowerCase()] === undefined) {
        return `${where}: the required header ${name} is missing`;
      }
    }
    if (body.length === 0) return null;
    const type = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const content = response.content ?? {};
    if (!(type in content) && !('*/*' in content)) {
      return `${where}: content type "${type}" is not declared (declared: ${Object.keys(content).join(', ') || 'none'})`;
    }
    if (type !== 'application/json' || !(type in content)) return null;
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      return `${where}: the body is not JSON`;
    }
    const pointer = `/paths/${escape(operation.path)}/${lower}/responses/${declared}/content/${escape(type)}/schema`;
    const validate = validatorFor(pointer);
    if (validate(value)) return null;
    return `${where}: ${JSON.stringify(validate.errors?.slice(0, 5))}\nbody: ${body.toString('utf8').slice(0, 500)}`;
  };
}

let defaultChecker: AnswerChecker | undefined;

/** Checks one answer against the tests' document; returns what is wrong with it, or null. */
export function checkAnswer(answer: Answer): string | null {
  defaultChecker ??= answerChecker(openApiDocument());
  return defaultChecker(answer);
}

/** The violations recorded since the last call. */
export function takeOpenApiViolations(): string[] {
  return violations.splice(0, violations.length);
}

type Handler = (req: IncomingMessage, res: ServerResponse, next?: unknown) => unknown;

/**
 * The same app (Express or any request handler), its answers checked against what the
 * document says of the listener it serves.
 */
export function checkedAgainstOpenApi<T extends Handler>(app: T, listener: Listener): T {
  return new Proxy(app, {
    apply(target, thisArg, args: Parameters<Handler>) {
      const [req, res] = args;
      observe(listener, req, res);
      return Reflect.apply(target, thisArg, args);
    },
  });
}

const observed = new WeakSet<ServerResponse>();

function observe(listener: Listener, req: IncomingMessage, res: ServerResponse): void {
  if (observed.has(res) || req.method === 'HEAD' || req.method === 'OPTIONS') return;
  observed.add(res);
  const url = req.url ?? '/';
  const chunks: Buffer[] = [];
  const keep = (chunk: unknown, encoding?: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    chunks.push(
      Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(
            chunk as string,
            typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
          ),
    );
  };
  const write = res.write.bind(res) as (...args: unknown[]) => boolean;
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  res.write = ((...args: unknown[]) => {
    keep(args[0], args[1]);
    return write(...args);
  }) as typeof res.write;
  res.end = ((...args: unknown[]) => {
    keep(args[0], args[1]);
    return end(...args);
  }) as typeof res.end;
  res.once('finish', () => {
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(res.getHeaders())) {
      if (value !== undefined) headers[name.toLowerCase()] = String(value);
    }
    const problem = checkAnswer({
      listener,
      method: req.method ?? 'GET',
      url,
      status: res.statusCode,
      headers,
      body: Buffer.concat(chunks),
    });
    if (problem) violations.push(problem);
  });
}

/** The refusals the listener writes itself, before any route (src/http/listener.ts). */
const LISTENER_REFUSALS = new Set([408, 417, 431, 501]);

/**
 * Whether an undeclared status may be checked against the operation's `default`. The generic
 * default (OTHER_REFUSAL) stands only for the listener's own refusals: any other status a route
 * answers must be declared by its code, or the document drifts unseen (a 500 from /healthz, a
 * 502 from the stats). An operation's own default (the send proxy's: SignalWire's answers as
 * they come) stands for every refusal.
 */
function fallsToDefault(fallback: { description?: string } | undefined, status: number): boolean {
  if (fallback === undefined || status < 400) return false;
  return fallback.description !== OTHER_REFUSAL.description || LISTENER_REFUSALS.has(status);
}
