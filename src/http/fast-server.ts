import http from 'node:http';
import type {
  IncomingMessage,
  RequestListener,
  Server,
  ServerOptions,
  ServerResponse,
} from 'node:http';
import type { Express } from 'express';

/**
 * An http.Server for an Express app whose requests and responses are born with the app's
 * own prototypes.
 *
 * Express's `app.handle` runs `Object.setPrototypeOf(req, app.request)` (and the same for
 * `res`) on every request, so that `req.app`, `req.ip`, `res.json`, … resolve through
 * `app.request` → `express.request` → `http.IncomingMessage.prototype`. Changing the
 * prototype of a live object gives V8 a new hidden class for it and throws away the inline
 * caches built on the old one; measured on two cores it alone cuts a bare Node server from
 * ~38k to ~12k requests/s. Node lets a server choose the constructors of its request and
 * response objects; when their `prototype` IS `app.request` / `app.response`, Express's swap
 * finds the prototype already set, and V8 returns without touching the object.
 *
 * The objects are the same as Express would make: same prototype chain, same constructor
 * body (Node's own IncomingMessage/ServerResponse run on them), so app code cannot tell the
 * difference — test/ingest/fast-server.test.ts and the API suite run through it check that.
 * One server serves one app (a mounted sub-app still swaps, as Express always did).
 * `handler` (default: the app) receives the requests: one that screens them before the app.
 */
export function createFastServer(
  app: Express,
  options: ServerOptions = {},
  handler: RequestListener = app,
): Server {
  return http.createServer(
    {
      ...options,
      IncomingMessage: constructorWithPrototype(http.IncomingMessage, app.request),
      ServerResponse: constructorWithPrototype(http.ServerResponse, app.response),
    },
    handler,
  );
}

/**
 * A constructor that runs `base`'s body on an object whose prototype is `prototype`. A
 * subclass cannot do this: a class's `prototype` property is a new object, and is read-only.
 * Node's IncomingMessage and ServerResponse are plain functions and accept being applied to
 * any object whose chain reaches their prototype (app.request's does).
 */
function constructorWithPrototype<T extends typeof IncomingMessage | typeof ServerResponse>(
  base: T,
  prototype: object,
): T {
  if (!Object.prototype.isPrototypeOf.call(base.prototype, prototype)) {
    throw new TypeError(`the prototype given for ${base.name} does not inherit from it`);
  }
  function Constructed(this: object, ...args: unknown[]): void {
    Reflect.apply(base, this, args);
  }
  Constructed.prototype = prototype;
  return Constructed as unknown as T;
}
