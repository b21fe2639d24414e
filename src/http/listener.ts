import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Express } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createFastServer } from './fast-server';

/**
 * How both listeners hold their connections (DESIGN §2 "No request can stall the process",
 * issue 14 item 4). Node's defaults suit neither side of a load balancer:
 *
 * - `headersTimeout` 10 s (Node: 60 s) and `requestTimeout` 30 s (Node: 300 s): a client that
 *   trickles its headers or its body is answered 408 and cut, instead of holding a connection
 *   and a parser for minutes. Both count only until the request is fully received, so a slow
 *   answer (the send proxy waiting on SignalWire, a long-poll) is not cut by them.
 * - Node checks those two only every `connectionsCheckingInterval` (30 s by default, which
 *   would let a slow client live 40 s): checked every second here.
 * - `keepAliveTimeout` (Node: 5 s) above the load balancer's idle timeout for upstream
 *   connections (ingress-nginx and AWS ALB: 60 s; HTTP_KEEP_ALIVE_TIMEOUT_MS, 65 s): when the
 *   service closes an idle connection first, the balancer can send a request into the
 *   closing socket and answer 502, which it does not retry for a POST. In Node ≥ 18 an idle
 *   keep-alive connection is governed by keepAliveTimeout alone, not by headersTimeout (the
 *   old advice to set headersTimeout above keepAliveTimeout predates that):
 *   test/ops/listener.test.ts checks it through a real socket.
 * - `maxConnections` (HTTP_MAX_CONNECTIONS): open connections at most, so a flood of idle
 *   sockets cannot take the process's memory and file descriptors. Past it a newcomer is let in
 *   only by closing a connection of the peer holding the most (see admitConnections), not by
 *   Node's `server.maxConnections`, which drops the newcomer whoever holds the other slots.
 * - `maxOwedAnswers`: a connection that pipelines requests is cut once it is owed this many
 *   answers at once. Node answers every pipelined request it has read — a 64 KiB read holds
 *   some 1,600 small GETs — and keeps each answer, with its request and response objects, until
 *   the client reads it; none of the timeouts above applies once the requests are in, so a
 *   hundred sockets that never read took a gigabyte. Browsers and the Ingress do not pipeline;
 *   a client that does and keeps more than this many requests in flight is cut too: the
 *   requests already handed to the app are handled, the rest of what was read is not.
 * - `stalledTimeoutMs` (Node's `server.timeout`): a connection on which nothing moves either
 *   way for this long is cut — one owed answers it never reads, which would otherwise hold a
 *   connection for ever. Longer than keepAliveTimeout and than any wait the service itself
 *   makes a client sit through: a feed long-poll (30 s), a send through the proxy (an
 *   Application read, a second read with the project's own token when the caller's was
 *   refused it, and the create, each up to SIGNALWIRE_TIMEOUT_MS).
 * - When a connection arrives at `maxConnections`, the connections idle for `idleToFreeMs` or
 *   more (no answer owed) are closed: see freeIdleConnectionsWhenFull. So are those whose
 *   answers the app has all ended and whose socket has taken none of them for as long (see
 *   sendingStalledFor): the peer is not reading, the app is not working on them.
 * - `sendTimeoutMs` (nginx's send_timeout): a connection whose answers the app has all ended
 *   and whose socket has taken no byte of them for this long is cut, full or not. An answer
 *   counts as owed until the socket has taken all of it, so a client that pipelined requests
 *   with large answers (a 404 names its path) and never read them, its receive window tiny,
 *   held each connection for stalledTimeoutMs, and for ever when it read a little now and
 *   then; each held 100–400 KiB (Node's 64 KiB read of requests, their requests and
 *   responses, the answers queued), up to 1.6 GiB at 4,096 connections. Far shorter than
 *   stalledTimeoutMs, which waits also for the app (a send at SignalWire, a long-poll).
 * - `maxUnflushedBytes`: past this many bytes of ended answers not yet taken by the socket,
 *   on a connection owed more than one answer (pipelined requests: the abuse above), the
 *   allowance without progress is `idleToFreeMs` instead. A connection owed one answer keeps
 *   `sendTimeoutMs` whatever its size: the internal listener's answers can be megabytes (500
 *   messages, /metrics, the docs), and their reader may pause.
 *   A client that reads keeps the socket taking bytes — the kernel takes more once half its
 *   send buffer is free, every round trip or so on a slow link, and on a fast one (a buffer
 *   of up to 4 MiB) within seconds unless the client reads under ~400 KiB/s.
 * - `maxBodyPieces`: a request whose body arrives in more pieces is answered 400 and cut (see
 *   limitBodyPieces): Node hands each chunk of a chunked body to JavaScript on its own.
 */
export interface ListenerSettings {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
  /** How often Node looks for connections past headersTimeout or requestTimeout. */
  timeoutCheckIntervalMs: number;
  maxOwedAnswers: number;
  stalledTimeoutMs: number;
  idleToFreeMs: number;
  sendTimeoutMs: number;
  maxUnflushedBytes: number;
  maxBodyPieces: number;
}

export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/** Browsers do not pipeline; HTTP clients that do keep a few requests in flight. */
export const MAX_OWED_ANSWERS = 32;
const STALLED_TIMEOUT_MS = 120_000;
/** Far longer than a busy client's pause between requests (milliseconds). */
const IDLE_TO_FREE_MS = 5_000;
/**
 * nginx's send_timeout: a client reading its answer lets its socket take bytes far more often,
 * and one that pauses (a pager on /metrics, a GC pause, a network dropout TCP rides out) still
 * gets the rest.
 */
const SEND_TIMEOUT_MS = 60_000;
/**
 * Four of the public listener's largest answers (a 404 naming a 16 KiB path); what a client
 * that pipelined requests with long paths and stopped reading leaves queued (up to 32 such
 * answers) is soon past it.
 */
const MAX_UNFLUSHED_BYTES = 64 * 1024;
/**
 * A body comes in one piece per chunk its client wrote, or per socket read: a few, or a few
 * hundred for the largest body (256 KiB) on a slow link. 4,096 pieces of the largest body
 * average 64 bytes.
 */
export const MAX_BODY_PIECES = 4_096;

/** The settings of both listeners (the same for both: neither needs longer). */
export function listenerSettings(config: Config): ListenerSettings {
  return {
    headersTimeoutMs: HEADERS_TIMEOUT_MS,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: config.httpKeepAliveTimeoutMs,
    maxConnections: config.httpMaxConnections,
    timeoutCheckIntervalMs: 1_000,
    maxOwedAnswers: MAX_OWED_ANSWERS,
    stalledTimeoutMs: Math.max(
      STALLED_TIMEOUT_MS,
      config.httpKeepAliveTimeoutMs + 10_000,
      3 * config.signalwireTimeoutMs + 30_000,
    ),
    idleToFreeMs: IDLE_TO_FREE_MS,
    sendTimeoutMs: SEND_TIMEOUT_MS,
    maxUnflushedBytes: MAX_UNFLUSHED_BYTES,
    maxBodyPieces: MAX_BODY_PIECES,
  };
}

/** An HTTP server for the app (the fast server: src/http/fast-server.ts) with these settings. */
export function createListener(app: Express, settings: ListenerSettings, logger?: Logger): Server {
  const server = createFastServer(
    app,
    {
      headersTimeout: settings.headersTimeoutMs,
      requestTimeout: settings.requestTimeoutMs,
      connectionsCheckingInterval: settings.timeoutCheckIntervalMs,
      // Node's own refusal of an HTTP/1.1 request without Host is an empty 400: refused
      // below instead, in the service's error shape.
      requireHostHeader: false,
    },
    (req, res) => {
      // A connection cut below still has the requests Node read with the last one, and one
      // closing once its owed answers are written (a request refused behind them) may still
      // parse more: unheard.
      if (req.socket.destroyed || closingOnceAnswered.has(req.socket)) return;
      if (!owe(connections.get(req.socket), req, res, settings.maxOwedAnswers)) {
        req.socket.destroy();
      } else if (faultyFraming(req) || repeatsHost(req)) {
        refuseRequest(res, MALFORMED, connections.get(req.socket));
      } else if (unsupportedTransferCoding(req)) {
        refuseRequest(res, NOT_IMPLEMENTED, connections.get(req.socket));
      } else if (lacksHost(req)) answerWithoutApp(res, MISSING_HOST);
      else {
        limitBodyPieces(req, res, settings.maxBodyPieces, connections.get(req.socket));
        app(req, res);
      }
    },
  );
  server.keepAliveTimeout = settings.keepAliveTimeoutMs;
  // Not server.maxConnections: admitConnections holds the limit (Node's would drop newcomers
  // before they reach it, whoever holds the other slots).
  server.timeout = settings.stalledTimeoutMs;
  const warning = logger ? warnAtConnectionLimit(settings.maxConnections, logger) : undefined;
  const freeIdle = freeIdleConnectionsWhenFull(settings.idleToFreeMs);
  const connections = admitConnections(server, settings, (outcome, table) => {
    warning?.(outcome);
    freeIdle(table);
  });
  const sweep = setInterval(
    () => cutStalledSenders(connections, settings),
    settings.timeoutCheckIntervalMs,
  );
  sweep.unref();
  server.once('close', () => clearInterval(sweep));
  server.on('clientError', (error: Error & { code?: string }, socket: Duplex) =>
    answerClientError(error, socket, connections.get(socket)),
  );
  // CONNECT: no listener is a connection closed with nothing said (a proxy in front answers
  // 502); like every other method the service does not take, refused in its error shape —
  // unless answers are owed on the connection (pipelined behind them): those first, as for
  // bytes the parser refuses. Node has let go of the connection's parser: nothing after it
  // is read.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) =>
    refuseUnparsed(socket, connections.get(socket), CONNECT_REFUSED),
  );
  // Expect: 100-continue. Node's own handling (no listener) writes 100 Continue before the app
  // sees the request, so a body refused by its declared size got 100 Continue, then 413.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    // Without a body there is nothing to hold back: 100 Continue at once, as Node does, so the
    // connection stays open (Node closes one answered while a 100 Continue is still owed).
    if (hasBody(req)) continueOnFirstRead(req, res);
    else res.writeContinue();
    // As Node does: every 'request' listener sees it (the drain's, src/process/listen.ts).
    server.emit('request', req, res);
  });
  // An Expect other than 100-continue: Node's own answer is an empty 417.
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) =>
    answerWithoutApp(res, EXPECTATION_FAILED),
  );
  return server;
}

/** What the listener knows of one open connection. */
interface Connection {
  socket: Duplex;
  /** The peer it counts against (see admitConnections). */
  peer: Peer;
  /** The answers owed: responses to requests handed on, not yet written out (see owe). */
  answers: Set<ServerResponse>;
  /** Bytes the socket had taken when last looked at (see sentBytes), and since when. */
  sent: number;
  lastSent: number;
  /** When it last began a request or finished an answer (or connected). */
  lastActive: number;
  /** The last request handed on: the one whose body, if any, is being received. */
  request?: IncomingMessage;
}

/** One peer's open connections, the one inactive longest first (see touch). */
interface Peer {
  key: string;
  sockets: Set<Duplex>;
}

/**
 * The open connections, each with its state, from its admission until its socket closes (or
 * the listener closes it), grouped by peer, with the peers grouped by how many they hold so
 * that the peer holding the most is found at once however many connections arrive.
 */
class ConnectionTable {
  readonly connections = new Map<Duplex, Connection>();
  readonly peers = new Map<string, Peer>();
  /** Peers by the number of connections they hold (only sizes above zero). */
  private readonly bySize = new Map<number, Set<Peer>>();
  private largest = 0;

  get size(): number {
    return this.connections.size;
  }

  add(socket: Duplex, key: string): Connection {
    let peer = this.peers.get(key);
    if (!peer) {
      peer = { key, sockets: new Set() };
      this.peers.set(key, peer);
    }
    this.resize(peer, () => peer.sockets.add(socket));
    const now = performance.now();
    const connection: Connection = {
      socket,
      peer,
      answers: new Set(),
      sent: 0,
      lastSent: now,
      lastActive: now,
    };
    this.connections.set(socket, connection);
    return connection;
  }

  /** Counts the connection out at once: a socket destroyed here closes only later. */
  remove(socket: Duplex): void {
    const connection = this.connections.get(socket);
    if (!connection) return;
    this.connections.delete(socket);
    const { peer } = connection;
    this.resize(peer, () => peer.sockets.delete(socket));
    if (peer.sockets.size === 0) this.peers.delete(peer.key);
  }

  /** The peers holding the most connections (several when they hold as many). */
  heaviest(): Iterable<Peer> {
    return this.bySize.get(this.largest) ?? [];
  }

  private resize(peer: Peer, change: () => void): void {
    const before = peer.sockets.size;
    this.bySize.get(before)?.delete(peer);
    if (this.bySize.get(before)?.size === 0) this.bySize.delete(before);
    change();
    const after = peer.sockets.size;
    if (after > 0) {
      let peers = this.bySize.get(after);
      if (!peers) this.bySize.set(after, (peers = new Set()));
      peers.add(peer);
    }
    // Sizes change by one: the largest is the new size, or one less once nobody holds it.
    if (after > this.largest) this.largest = after;
    else if (!this.bySize.has(this.largest)) this.largest = Math.max(0, this.largest - 1);
  }
}

/** The connection's request began or its answer was written out: it is active now. */
function touch(connection: Connection): void {
  connection.lastActive = performance.now();
  const { sockets } = connection.peer;
  // Kept in order of activity, so the first that may be closed is the one inactive longest.
  if (sockets.delete(connection.socket)) sockets.add(connection.socket);
}

/**
 * Who a connection comes from, as the public rate limit tells clients apart
 * (src/http/rate-limit.ts): its address, an IPv4-mapped IPv6 address as IPv4, IPv6 by /56
 * (one host usually owns a whole prefix). The socket's own address, not X-Forwarded-For,
 * which is not read yet: behind a load balancer its few addresses share the connections.
 */
function peerKey(socket: Duplex): string {
  const address = (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? '';
  // An IPv4 client of the default `::` listener, as ipKeyGenerator reads it, without its IPv6
  // parse (some 8 µs) on every connection a flood opens.
  return IPV4_MAPPED.exec(address)?.[1] ?? ipKeyGenerator(address, 56);
}

const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** What became of a connection that arrived with every slot taken. */
type FullOutcome = 'refused' | 'made-room';

/**
 * Admits each new connection up to `maxConnections`, and past it decides, as the connection
 * arrives, between the newcomer and the peer (remote address, IPv6 by /56) holding the most
 * connections: when the newcomer's peer, counting the newcomer, holds fewer, one connection of
 * the heaviest peer that may be closed (mayClose: no answer awaited, the one inactive longest)
 * is closed and the newcomer kept; otherwise the newcomer is closed.
 *
 * Decided at arrival because freeing slots after refusing a newcomer does not help: Node's
 * `server.maxConnections` drops the newcomer whoever holds the other slots, and one anonymous
 * client holding them all — half-open connections (a request line only) reconnected the
 * instant one is cut, or keep-alive connections each sending a request every few seconds,
 * never idle — always took the freed slot before SignalWire's next try seconds later. Then
 * SignalWire's signed callbacks (a new connection each) and the kubelet's probes got no answer
 * at all for as long as it lasted. Now such a client keeps its slots only against its own
 * newcomers: any other peer's connection takes one of them.
 *
 * No fixed share per peer: a single peer (a load balancer in front, TRUST_PROXY) may hold
 * every slot while nobody else wants one, and the few peers behind a balancer share them
 * fairly. A connection whose request is whole and awaiting its answer (a send at SignalWire,
 * a long-poll) is never the one closed. `onFull` is told of every arrival past the limit.
 */
function admitConnections(
  server: Server,
  settings: Pick<ListenerSettings, 'maxConnections' | 'idleToFreeMs'>,
  onFull: (outcome: FullOutcome, table: ConnectionTable) => void,
): Map<Duplex, Connection> {
  const table = new ConnectionTable();
  server.on('connection', (socket: Duplex) => {
    const key = peerKey(socket);
    if (table.size >= settings.maxConnections) {
      const made = makeRoom(table, key, settings.idleToFreeMs);
      onFull(made ? 'made-room' : 'refused', table);
      if (!made) {
        socket.destroy();
        return;
      }
    }
    table.add(socket, key);
    socket.once('close', () => table.remove(socket));
  });
  return table.connections;
}

/**
 * Closes a connection of the heaviest peer for a newcomer from peer `key` when that peer,
 * counting the newcomer, holds fewer; false when it does not, or when the heaviest peer has
 * no connection that may be closed.
 */
function makeRoom(table: ConnectionTable, key: string, idleToFreeMs: number): boolean {
  const holding = (table.peers.get(key)?.sockets.size ?? 0) + 1;
  const now = performance.now();
  for (const peer of table.heaviest()) {
    if (holding >= peer.sockets.size) return false;
    for (const socket of peer.sockets) {
      const connection = table.connections.get(socket)!;
      if (!mayClose(connection, now, idleToFreeMs)) continue;
      table.remove(socket);
      socket.destroy();
      return true;
    }
  }
  return false;
}

/**
 * Whether the listener may close a connection to make room: it owes no answer (an idle
 * keep-alive connection, or one whose request headers are not complete yet), or its only
 * request has been receiving its body for `stalledForMs` or more, or the app has ended every
 * answer it owes and its socket has taken none of them for `stalledForMs` (the peer is not
 * reading). Never one whose request is whole and awaiting the app's answer.
 */
function mayClose(connection: Connection, now: number, stalledForMs: number): boolean {
  if (connection.answers.size === 0) return true;
  if ((sendingStalledFor(connection, now) ?? 0) >= stalledForMs) return true;
  return (
    connection.answers.size === 1 &&
    receivingBody(connection.request) &&
    now - connection.lastActive >= stalledForMs
  );
}

/**
 * Counts one more answer owed on the connection until `res` is written out (or the connection
 * is gone); false, counting nothing, when `max` are owed already.
 */
function owe(
  connection: Connection | undefined,
  req: IncomingMessage,
  res: ServerResponse,
  max: number,
): boolean {
  // Not tracked: a request emitted by hand (server.emit), not read off a socket.
  if (!connection) return true;
  if (connection.answers.size >= max) return false;
  connection.answers.add(res);
  connection.request = req;
  // A new request is the peer's doing: its answers' send allowance starts now.
  connection.lastSent = performance.now();
  touch(connection);
  let paid = false;
  const pay = (): void => {
    if (paid) return;
    paid = true;
    connection.answers.delete(res);
    touch(connection);
    // Not kept past its answer: an idle connection holds no request object.
    if (connection.request === req) connection.request = undefined;
  };
  res.once('finish', pay);
  res.once('close', pay);
  return true;
}

/** A refusal written without the app (no request id yet): status, error code, message. */
type Refusal = [status: number, code: string, message: string];

/** The service's error body for a refusal, with a fresh request id. */
function refusalBody([, code, message]: Refusal): string {
  return JSON.stringify({ error: { code, message, request_id: randomUUID() } });
}

// What Node's HTTP parser refuses before a request exists, in the service's error shape.
const CLIENT_ERRORS: Readonly<Record<string, Refusal>> = {
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large', 'The request headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'The request was not received in time'],
};
const MALFORMED: Refusal = [400, 'malformed_request', 'The request is not valid HTTP'];
const CONNECT_REFUSED: Refusal = [405, 'method_not_allowed', 'CONNECT is not allowed here'];

/**
 * Node's own answer to a request its parser refuses (a malformed Content-Length or header, too
 * large headers) or that trickles in past headersTimeout / requestTimeout: the same statuses
 * (400, 431, 408), but with the JSON error body every other error has (DESIGN §2), and only
 * where it cannot be read as the answer to another request. No request exists yet, so the
 * answer is written to the socket itself, with a fresh id; the connection is closed after it.
 *
 * Bytes Node cannot parse behind requests whose answers are still owed (a keep-alive or
 * pipelining client sent them before reading): a refusal written now would be read as the
 * first owed answer — a stored callback's 200 taken for a 400 — so nothing is written for
 * them. The owed answers are written out, then the connection is closed. A request whose own
 * body fails to parse is refused as refuseRequest refuses it: after the answers owed before it.
 */
function answerClientError(
  error: Error & { code?: string },
  socket: Duplex,
  connection: Connection | undefined,
): void {
  if (error.code === 'ECONNRESET') return void socket.destroy(error);
  const refusal = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED;
  const receiving = connection?.request?.complete === false ? connection.request : undefined;
  const own = receiving && [...connection!.answers].find((res) => res.req === receiving);
  if (own) refuseRequest(own, refusal, connection);
  else refuseUnparsed(socket, connection, refusal, error);
}

/**
 * Refuses what came on the connection after the requests handed on: written at once when no
 * answer is owed there; else the owed answers are written out first and the connection then
 * closed, nothing said of the rest (a refusal written now would be read as the first owed
 * answer).
 */
function refuseUnparsed(
  socket: Duplex,
  connection: Connection | undefined,
  refusal: Refusal,
  error?: Error,
): void {
  const answers = connection ? [...connection.answers] : [];
  if (answers.length === 0) refuseOnSocket(socket, refusal, error);
  else closeOnceAnswered(socket, answers);
}

// Connections waiting for their owed answers before closing (the parser, in error, reports
// again on every read meanwhile).
const closingOnceAnswered = new WeakSet<Duplex>();

/**
 * Closes the connection once every one of `answers` has been written out (or let go): with
 * `last` when given (a refusal that is then the next answer), else by ending it.
 */
function closeOnceAnswered(
  socket: Duplex,
  answers: readonly ServerResponse[],
  last: () => void = () => socket.end(),
): void {
  if (closingOnceAnswered.has(socket)) return;
  closingOnceAnswered.add(socket);
  // Nothing more read from it: what follows the bytes in error is not a request.
  socket.pause();
  let owed = answers.length;
  const paid = (): void => {
    if (--owed === 0) last();
  };
  for (const res of answers) {
    if (res.writableFinished || res.destroyed) paid();
    else res.once('close', paid);
  }
}

/**
 * Writes the refusal on the socket itself, only when no answer has begun there, and closes the
 * connection: nothing more is read from it, so no request after this one reaches the app.
 */
function refuseOnSocket(socket: Duplex, refusal: Refusal, error?: Error): void {
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const [status] = refusal;
    const body = refusalBody(refusal);
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
  }
  socket.destroy(error);
}

/**
 * Refuses a request whose framing cannot be trusted, closing its connection so that nothing
 * read after it reaches the app. The refusal is written when this request's answer is the next
 * one the socket owes: with earlier pipelined answers still pending, bytes written now would be
 * read as the first of them, so those are written out first (their requests were whole), and
 * the refusal after them. Not tracked (`connection` undefined): the connection is only cut.
 */
function refuseRequest(
  res: ServerResponse,
  refusal: Refusal,
  connection: Connection | undefined,
): void {
  const socket = res.socket ?? res.req.socket;
  const next = (socket as Duplex & { _httpMessage?: unknown })._httpMessage;
  if (next === undefined || next === res) return refuseOnSocket(socket, refusal);
  const earlier = connection ? answersBefore(connection, res) : [];
  if (earlier.length === 0) socket.destroy();
  // Its own answer may have gone out meanwhile (the app answered without its body): then
  // nothing more is said.
  else {
    closeOnceAnswered(socket, earlier, () =>
      res.writableFinished ? socket.end() : refuseOnSocket(socket, refusal),
    );
  }
}

/** The answers owed on the connection before `res` (in the order their requests came). */
function answersBefore(connection: Connection, res: ServerResponse): ServerResponse[] {
  const answers = [...connection.answers];
  const at = answers.indexOf(res);
  return at < 0 ? [] : answers.slice(0, at);
}

/**
 * An HTTP/1.0 request with Transfer-Encoding: RFC 9112 §6.1 has it treated as faulty framing.
 * Node reads its body as chunked and keeps the connection; a proxy in front that reads it as
 * HTTP/1.0 does (to the close) takes the bytes after the last chunk as body, which here would
 * be a request of their own — one that proxy never saw (request smuggling).
 */
function faultyFraming(req: IncomingMessage): boolean {
  return (
    req.httpVersionMajor === 1 &&
    req.httpVersionMinor === 0 &&
    req.headers['transfer-encoding'] !== undefined
  );
}

/**
 * More than one Host header line: RFC 9112 §3.2 has the server answer 400. Node keeps the
 * first; a proxy in front may have routed or checked by another, and nothing here can tell
 * which host the sender meant.
 */
function repeatsHost(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++seen > 1) return true;
  }
  return false;
}

const NOT_IMPLEMENTED: Refusal = [
  501,
  'unsupported_transfer_encoding',
  'Only the chunked transfer coding is supported',
];
const FRAGMENTED: Refusal = [
  400,
  'body_too_fragmented',
  'The request body came in too many pieces (chunks)',
];
const MISSING_HOST: Refusal = [400, 'missing_host', 'An HTTP/1.1 request must carry a Host header'];
const EXPECTATION_FAILED: Refusal = [
  417,
  'expectation_failed',
  'Only the 100-continue expectation is supported',
];

/**
 * 100 Continue only once the app starts reading the body (RFC 9110 §10.1.1 lets a server
 * answer a final status instead). What a route refuses before it reads — a declared size past
 * its limit (413: callbacks 64 KiB, the send proxy 256 KiB), missing credentials, a content
 * type — is answered at once without 100 Continue, and the client never sends the body it held
 * back; Node then closes the connection after the answer, since the body was neither invited
 * nor read. The limits and the checks stay with the routes: whatever reads a body asks for it,
 * through the stream's `_read` (raw-body, the body parsers, a pipe alike).
 *
 * Once the answer has begun nothing is written: after the answer Node drains an unread body
 * (req._dump), which reads too.
 */
function continueOnFirstRead(req: IncomingMessage, res: ServerResponse): void {
  const read = req._read;
  req._read = function (this: IncomingMessage, size: number): void {
    req._read = read;
    if (!res.headersSent && !res.writableEnded) res.writeContinue();
    read.call(this, size);
  };
}

/**
 * Answers 400 and cuts the connection once the body has come in more than `max` pieces.
 * Node's parser hands every chunk of a chunked body to JavaScript on its own — a Buffer, a
 * push, a 'data' event — and a whole socket read of them at once: a 256 KiB body sent to the
 * send proxy in 1-byte chunks (1.5 MB on the wire) cost 1.5 s of CPU, each of its reads holding
 * the event loop 60–300 ms, where the same body with a Content-Length costs ~30 ms. Counted
 * where the parser pushes each piece (before any reader sees it), so what the app reads is
 * unchanged; past the limit nothing more is pushed and the socket is no longer read, so such a
 * body costs at most the read that crossed the line.
 */
function limitBodyPieces(
  req: IncomingMessage,
  res: ServerResponse,
  max: number,
  connection: Connection | undefined,
): void {
  if (!hasBody(req)) return;
  const push = req.push;
  let pieces = 0;
  req.push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding) {
    // Past the limit nothing more, not even the end: a body cut short must never look whole
    // to the app (its readers fail on the connection's close instead).
    if (pieces > max) return false;
    // null is the body's end, not a piece of it.
    if (chunk === null || ++pieces <= max) return push.call(this, chunk, encoding);
    refuseRequest(res, FRAGMENTED, connection);
    return false;
  };
  // An answer given before the body was read (a refusal: 401 without credentials, 413, 415)
  // has Node discard the rest of the body to keep the connection (req._dump), and its parser
  // then hands each discarded piece to JavaScript without pushing it: uncounted, an endless
  // body of 1-byte chunks behind a refusal held the loop as above, for as long as the client
  // sent. Discarded as a reader would discard it instead, each piece still goes through push.
  let discarding = false;
  (req as IncomingMessage & { _dump(): void })._dump = function (this: IncomingMessage) {
    if (discarding) return;
    discarding = true;
    this.removeAllListeners('data');
    this.on('data', () => undefined);
    this.resume();
  };
}

/** Whether a body follows the head: a length above zero, or a transfer coding. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * A transfer coding besides the final chunked one (`gzip, chunked`): Node undoes only the
 * chunked framing and would hand the app the body still encoded, read as if it were not.
 * RFC 9112 §6.1: a server that does not understand a coding should answer 501. (Node's parser
 * refuses a request whose last coding is not chunked, or that repeats chunked, itself.)
 */
function unsupportedTransferCoding(req: IncomingMessage): boolean {
  const coding = req.headers['transfer-encoding'];
  return coding !== undefined && coding.trim().toLowerCase() !== 'chunked';
}

/** What Node's requireHostHeader refuses: HTTP/1.1 (or later) without a Host header. */
function lacksHost(req: IncomingMessage): boolean {
  return req.headers.host === undefined && (req.httpVersionMajor > 1 || req.httpVersionMinor >= 1);
}

/**
 * A refusal Node would otherwise write itself, before the app sees the request, with an empty
 * body: written here in the service's error shape (fresh id, as in answerClientError). The
 * body of the request is not read, so the connection is closed after the answer.
 */
function answerWithoutApp(res: ServerResponse, refusal: Refusal): void {
  const body = refusalBody(refusal);
  res.writeHead(refusal[0], {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
  });
  res.end(body);
}

/**
 * When a connection arrives with every slot taken, the connections that have been idle for
 * `idleForMs` or more (no answer owed), or stuck that long in receiving a request body, are
 * closed, at most once a second. Otherwise one client opening thousands of keep-alive
 * connections, with one request each per keep-alive period, held every slot: the load
 * balancer's connections, SignalWire's and the kubelet's probes were refused until the client
 * left (admitConnections now also lets another peer's newcomer in at once). Not every idle
 * connection: a busy keep-alive client (the Ingress, an app's agent) pauses for milliseconds
 * between requests, and closing its connections would hand their slots to whoever fills the
 * rest. A connection that has sent nothing since it connected counts as idle too
 * (headersTimeout cuts it soon anyway).
 *
 * A request whose body is still arriving `idleForMs` after the request began is stalled: a
 * callback (≈1 KiB) or a send (a few KiB) arrives in one go. Without this, whole headers and a
 * body held back one byte short (any signature header gets a callback's body read) kept a
 * connection "owed an answer" until requestTimeout, 30 s, and a client reconnecting as each
 * was cut held every slot. A request whose body is in, waiting for its answer (a send at
 * SignalWire, a long-poll), is not touched, however old.
 */
function freeIdleConnectionsWhenFull(idleForMs: number): (table: ConnectionTable) => void {
  // Monotonic, like lastActive: a wall clock stepped back would keep this protection off for
  // as long as the step.
  let lastFreed = -Infinity;
  return (table) => {
    const now = performance.now();
    if (now - lastFreed < 1_000) return;
    lastFreed = now;
    for (const [socket, connection] of table.connections) {
      if (connection.answers.size === 0 && now - connection.lastActive < idleForMs) continue;
      if (!mayClose(connection, now, idleForMs)) continue;
      table.remove(socket);
      socket.destroy();
    }
  };
}

/**
 * How long the connection's socket has taken no byte of its answers, when the app has ended
 * every answer the connection is owed; undefined while the app still owes one (it may be
 * waiting on the database or SignalWire: not the peer's doing), or when none is owed.
 * Progress is looked at here, and every timeoutCheckIntervalMs (cutStalledSenders).
 */
function sendingStalledFor(connection: Connection, now: number): number | undefined {
  if (connection.answers.size === 0) return undefined;
  for (const res of connection.answers) if (!res.writableEnded) return undefined;
  const sent = sentBytes(connection.socket);
  if (sent === undefined) return undefined;
  if (sent !== connection.sent) {
    connection.sent = sent;
    connection.lastSent = now;
  }
  return now - connection.lastSent;
}

/**
 * Bytes the kernel has taken from the socket (sent, or in its send buffer): those handed to
 * libuv less those it still queues. Not socket.bytesWritten, which counts what is queued
 * too, nor 'drain' or a write's callback, which wait for the whole of a write: an 8 MiB
 * answer read slowly is one write that completes only at its end. Undefined for a stream
 * without a libuv handle (destroyed, or not a TCP socket).
 */
function sentBytes(socket: Duplex): number | undefined {
  const tcp = socket as Duplex & {
    _bytesDispatched?: number;
    _handle?: { writeQueueSize?: number } | null;
  };
  const queued = tcp._handle?.writeQueueSize;
  if (typeof tcp._bytesDispatched !== 'number' || typeof queued !== 'number') return undefined;
  return tcp._bytesDispatched - queued;
}

/**
 * Bytes of the connection's answers not yet taken by the kernel: on the socket (Node's
 * buffer and libuv's queue) and in the responses queued behind the one it is sending.
 */
function unsentBytes(connection: Connection): number {
  const { socket } = connection;
  let bytes = (socket as Duplex & { bytesWritten?: number }).bytesWritten ?? 0;
  bytes -= sentBytes(socket) ?? bytes;
  for (const res of connection.answers) {
    bytes += (res as ServerResponse & { outputSize?: number }).outputSize ?? 0;
  }
  return bytes;
}

/**
 * Cuts each connection whose answers the app has all ended and whose socket has taken none
 * of them for sendTimeoutMs, or for idleToFreeMs when it is owed several (pipelined) and
 * more than maxUnflushedBytes of them wait: the peer does not read, and what they hold (up to
 * MAX_OWED_ANSWERS requests and answers, and the requests Node read with them) is freed.
 */
function cutStalledSenders(
  connections: Map<Duplex, Connection>,
  settings: Pick<ListenerSettings, 'sendTimeoutMs' | 'idleToFreeMs' | 'maxUnflushedBytes'>,
): void {
  const now = performance.now();
  for (const connection of connections.values()) {
    const stalled = sendingStalledFor(connection, now);
    if (stalled === undefined) continue;
    const allowed =
      connection.answers.size > 1 && unsentBytes(connection) > settings.maxUnflushedBytes
        ? settings.idleToFreeMs
        : settings.sendTimeoutMs;
    if (stalled >= allowed) connection.socket.destroy();
  }
}

/** Whether a request's body is still arriving (a request without a body is whole at once). */
function receivingBody(req: IncomingMessage | undefined): boolean {
  return req !== undefined && !req.complete;
}

/**
 * At most one line a minute, however many connections arrive past the limit: how many were
 * refused, and how many were let in by closing one of the heaviest peer's.
 */
function warnAtConnectionLimit(max: number, logger: Logger): (outcome: FullOutcome) => void {
  let refused = 0;
  let madeRoom = 0;
  let lastWarning = -Infinity;
  return (outcome) => {
    if (outcome === 'refused') refused++;
    else madeRoom++;
    const now = performance.now();
    if (now - lastWarning < 60_000) return;
    lastWarning = now;
    logger.warn(
      { dropped: refused, made_room: madeRoom, max_connections: max },
      'connection limit reached: new connections are refused, or let in by closing one of the ' +
        'peer holding the most (HTTP_MAX_CONNECTIONS)',
    );
    refused = 0;
    madeRoom = 0;
  };
}

/**
 * The addresses to try, in order, for HOST: `::` (the default: IPv4 and IPv6, so IPv6-only
 * clusters work) falls back to `0.0.0.0` on a machine without IPv6.
 */
export function bindAddresses(host: string): string[] {
  return host === '::' ? ['::', '0.0.0.0'] : [host];
}

// What binding an IPv6 address says when the machine has no IPv6 (kernel without it, or
// disabled): only these move on to the next address; anything else (a port in use) is thrown.
const NO_SUCH_ADDRESS = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL']);

/** Listens on the first of `addresses` the machine has; resolves once listening. */
export async function listenOn(
  server: Server,
  port: number,
  addresses: readonly string[],
  logger?: Logger,
): Promise<void> {
  for (let index = 0; ; index++) {
    const address = addresses[index]!;
    try {
      await bind(server, port, address);
      return;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const next = addresses[index + 1];
      if (next === undefined || typeof code !== 'string' || !NO_SUCH_ADDRESS.has(code)) throw error;
      logger?.warn({ address, code, fallback: next }, `cannot listen on ${address}: using ${next}`);
    }
  }
}

function bind(server: Server, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (error: Error): void => reject(error);
    server.once('error', fail);
    server.listen(port, address, () => {
      server.off('error', fail);
      resolve();
    });
  });
}
