import type { IncomingMessage, ServerResponse } from 'node:http';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { buildApiDocument } from '../../src/openapi/api-document';
import type { OpenApiDocument } from '../../src/openapi/api-document';

/**
 * Every answer an API test gets is checked against the service's OpenAPI document, so the
 * document cannot drift from what the routes do: test/helpers/test-app.ts wraps the apps it
 * builds with `checkedAgainstOpenApi`, and test/helpers/openapi-setup.ts (jest's
 * setupFilesAfterEnv) fails the test in which an answer broke the document. A request to a
 * path and method the document does not describe (a 404 for a made-up path) is not checked.
 *
 * Checked: the status is one the operation declares (or it has `default`); a body comes with
 * a content type declared for that status; a JSON body validates against its schema.
 */

let document: OpenApiDocument | undefined;
let ajv: Ajv2020 | undefined;
const validators = new Map<string, ValidateFunction>();
const violations: string[] = [];

export function openApiDocument(): OpenApiDocument {
  document ??= buildApiDocument('test');
  return document;
}

export type Listener = 'public' | 'internal';

interface Operation {
  path: string;
  pattern: RegExp;
  responses: Record<string, { content?: Record<string, unknown> }>;
  method: string;
  listeners: Listener[];
}

let operations: Operation[] | undefined;

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

function validatorFor(pointer: string): ValidateFunction {
  if (!ajv) {
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(openApiDocument() as object, 'openapi');
  }
  let validate = validators.get(pointer);
  if (!validate) {
    validate = ajv.compile({ $ref: `openapi#${pointer}` });
    validators.set(pointer, validate);
  }
  return validate;
}

const escape = (segment: string) => segment.replace(/~/g, '~0').replace(/\//g, '~1');

/** Checks one answer; returns what is wrong with it, or null. */
export function checkAnswer(
  listener: Listener,
  method: string,
  url: string,
  status: number,
  contentType: string | undefined,
  body: Buffer,
): string | null {
  operations ??= operationsOf(openApiDocument());
  const path = url.split('?')[0]!;
  const lower = method.toLowerCase();
  const operation = operations.find(
    (op) => op.method === lower && op.listeners.includes(listener) && op.pattern.test(path),
  );
  if (!operation) return null;
  const where = `${method} ${url} → ${status}`;
  const declared = operation.responses[String(status)] ? String(status) : 'default';
  const response = operation.responses[declared];
  if (!response) return `${where}: status ${status} is not in the document for ${operation.path}`;
  if (body.length === 0) return null;
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
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
    const contentType = res.getHeader('content-type');
    const problem = checkAnswer(
      listener,
      req.method ?? 'GET',
      url,
      res.statusCode,
      typeof contentType === 'string' ? contentType : undefined,
      Buffer.concat(chunks),
    );
    if (problem) violations.push(problem);
  });
}
