import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, open, readFile, readdir, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * One process per directory (a spool, an embedded PostgreSQL's data), enforced by the kernel
 * rather than by a PID file.
 *
 * A PID file cannot tell a live holder from a dead one in a container: a pod restarted on
 * its persistent volume has the same hostname and is PID 1 again, so "is PID 1 on this host
 * alive?" answers yes — it is the newcomer itself. Instead the holder listens on a Unix
 * socket inside the directory. While the holder lives, connecting succeeds (the kernel
 * accepts into the backlog even when its event loop is busy); once it has died, for whatever
 * reason, connecting is refused. So a crashed holder never leaves the directory stuck, and a
 * live one is never displaced.
 *
 * Files, all in the directory (`lock` is the default name; several locks may share a directory):
 * - `.lock.<generation>`: the holder's record (JSON, see LockHolder), created atomically with
 *   link(2) — which fails if the name exists — from a fully written temporary file;
 * - `.lock-<nonce>.sock`: the holder's socket, bound before its record exists.
 *
 * Taking over from a dead holder never deletes a record someone else may be creating: the
 * newcomer creates the next generation instead, and only one process can create it. It then
 * checks that no higher generation exists (a slow competitor may have judged an older record)
 * and only after that removes the older records.
 *
 * The socket is also a small control channel: a command run beside the holder (the spool
 * command, `kubectl exec`) can ask it who it is or to do something on its behalf (see
 * `askHolder`), since the holder is the only process allowed to touch the directory. One JSON
 * line each way per connection; a request with `ack: true` first gets an `{"ack":true}` line the
 * moment the holder takes it up, so that its asker can tell a long request (a requeue) from a
 * holder that will never answer — one stopped or too busy, which the kernel still connects to.
 * A holder letting the directory go refuses new requests and answers those it has not answered
 * yet with a refusal, rather than leaving its askers waiting.
 *
 * A full disk (ENOSPC, EDQUOT) must not keep a process from taking the directory: a spool
 * that fills its volume during an outage is drained — and the space freed — only by the
 * process that opens it, so a refusal there would crash-loop the pod with every acknowledged
 * callback stuck on the volume. The record's content is the only thing that needs free blocks:
 * its temporary file is then linked in empty (an inode and a directory entry, which a full disk
 * still gives), so link(2) still decides who holds which generation, and the holder is known
 * by its socket alone: it answers `lock-holder` with its record from memory. A newcomer that
 * finds a blank record asks the directory's live sockets which one holds that generation
 * (judgeBlank); with no answer at all it judges the record by its heartbeat, as one from another
 * machine. (A small reserve file freed on ENOSPC would also work, until the one time the
 * reserve was not there.)
 *
 * A Unix socket is local to one kernel. A holder on another machine (a volume shared over
 * the network, or a record left before a reboot) cannot be probed; then its record's
 * heartbeat decides: refreshed within `foreignStaleMs`, it is taken as alive. A newcomer
 * waits that long for it to go stale (a pod rescheduled onto another node right after its
 * predecessor was killed) before it gives up.
 */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** The kernel's boot id: a socket can only be probed from the same boot of the same machine. */
  bootId: string | null;
  startedAt: string;
  /** What holds the directory, for people: `npm start`, `spool replay`, … */
  command: string;
  generation: number;
  /** The socket's file name in the directory. */
  socket: string;
  /** Anything the holder wants a newcomer to know (ports, the database it serves, …). */
  details?: Readonly<Record<string, unknown>>;
}

export class InstanceLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly holder: LockHolder,
  ) {
    super(`${dir} is in use by ${describeHolder(holder)}; only one process may use it at a time`);
    this.name = 'InstanceLockedError';
  }
}

/** A request a holder answers on its socket; the answer is any JSON value. */
export type LockRequestHandler = () => Promise<unknown>;

export interface InstanceLock {
  readonly dir: string;
  readonly holder: LockHolder;
  /** Answers `askHolder(dir, op)` from other processes. */
  handle(op: string, handler: LockRequestHandler): void;
  /** Removes the record and closes the socket. Safe to call twice. */
  release(): Promise<void>;
}

export interface AcquireOptions {
  dir: string;
  /** Names the lock's files (`.<name>.<generation>`), so several can share a directory. */
  name?: string;
  command: string;
  details?: Readonly<Record<string, unknown>>;
  /** How long a holder on another machine stays alive without a heartbeat (default 30 s). */
  foreignStaleMs?: number;
  /** How long to wait for a holder on another machine to go stale (default: foreignStaleMs). */
  foreignWaitMs?: number;
  /** How often the holder refreshes its heartbeat (default: a third of foreignStaleMs). */
  heartbeatMs?: number;
}

// sun_path holds 108 bytes with its terminating NUL.
const MAX_SOCKET_PATH = 107;
// The request every socket of a lock answers: its holder's record, or null while it takes the
// lock (judgeBlank). Not a name `handle` is given.
const HOLDER_REQUEST = 'lock-holder';
// How long a socket that connects has to say whom it holds for (as `connects` waits).
const HOLDER_ANSWER_MS = 5_000;

/** The file names of one lock. */
interface LockFiles {
  recordName(generation: number): string;
  generationOf(file: string): number | undefined;
  socketName(nonce: string): string;
  isSocket(file: string): boolean;
  temporaryName(nonce: string): string;
  isTemporary(file: string): boolean;
}

function lockFiles(name: string): LockFiles {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name)) throw new Error(`bad lock name ${name}`);
  const escaped = name.replace(/\./g, '\\.');
  const record = new RegExp(`^\\.${escaped}\\.(\\d{12})$`);
  const socket = new RegExp(`^\\.${escaped}-[0-9a-f]{16}\\.sock$`);
  const temporary = new RegExp(`^\\.${escaped}\\.tmp-[0-9a-f]{16}$`);
  return {
    recordName: (generation) => `.${name}.${String(generation).padStart(12, '0')}`,
    generationOf(file) {
      const match = record.exec(file);
      return match ? Number(match[1]) : undefined;
    },
    socketName: (nonce) => `.${name}-${nonce}.sock`,
    isSocket: (file) => socket.test(file),
    temporaryName: (nonce) => `.${name}.tmp-${nonce}`,
    isTemporary: (file) => temporary.test(file),
  };
}

export async function acquireInstanceLock(options: AcquireOptions): Promise<InstanceLock> {
  const dir = path.resolve(options.dir);
  const files = lockFiles(options.name ?? 'lock');
  const foreignStaleMs = options.foreignStaleMs ?? 30_000;
  const waitUntil = Date.now() + (options.foreignWaitMs ?? foreignStaleMs);
  const nonce = randomBytes(8).toString('hex');
  const socketName = files.socketName(nonce);
  const handlers = new Map<string, LockRequestHandler>();
  // The record this process is creating or holds, answered from memory (a blank record's
  // holder is known by its socket alone).
  let candidate: LockHolder | null = null;
  handlers.set(HOLDER_REQUEST, async () => candidate);
  const listener = await listenOn(dir, socketName, handlers);

  try {
    await removeOldTemporaries(dir, files);
    for (let attempt = 1; ; attempt++) {
      // Each round ends with a lock, a live holder, or a newer record to judge: a few suffice.
      if (attempt > 50) throw new Error(`${dir}: could not settle who holds the lock`);
      const records = await listRecords(dir, files);
      const top = records.at(-1);
      if (top !== undefined) {
        const judged = await judgeRecord(dir, files, top, foreignStaleMs, socketName);
        // A record that vanished between listing and reading was replaced: look again.
        if (judged === undefined) continue;
        const { holder, state } = judged;
        if (state === 'foreign' && Date.now() < waitUntil) {
          await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, foreignStaleMs / 4)));
          attempt--; // waiting is not a contest lost
          continue;
        }
        if (state !== 'dead') throw new InstanceLockedError(dir, holder);
      }
      const holder: LockHolder = {
        pid: process.pid,
        hostname: os.hostname(),
        bootId: bootId(),
        startedAt: new Date().toISOString(),
        command: options.command,
        generation: (top ?? 0) + 1,
        socket: socketName,
        ...(options.details && { details: options.details }),
      };
      candidate = holder;
      // Another process created this generation first: judge it like any holder.
      if (!(await createRecord(dir, files, holder, nonce))) {
        candidate = null;
        continue;
      }
      const after = await listRecords(dir, files);
      if (after.some((generation) => generation > holder.generation)) {
        // Someone judged an older record and moved past ours: they decide, we look again.
        await unlink(path.join(dir, files.recordName(holder.generation))).catch(() => undefined);
        candidate = null;
        continue;
      }
      await removeStale(dir, files, after, holder);
      const heartbeatMs = options.heartbeatMs ?? foreignStaleMs / 3;
      return holderLock(dir, files, holder, listener, handlers, heartbeatMs);
    }
  } catch (error) {
    await listener.close();
    throw error;
  }
}

/** The live holder of `dir`'s lock `name`, if any (nothing is taken or removed). */
export async function findHolder(
  dir: string,
  name = 'lock',
  foreignStaleMs = 30_000,
): Promise<LockHolder | undefined> {
  return (await judgeHolder(dir, name, foreignStaleMs))?.holder;
}

/**
 * As findHolder, and how it is known to live: `alive`, its socket answers here; `foreign`, on
 * another machine (or this one before a reboot) with a fresh heartbeat — alive as far as anyone
 * knows, and asked nothing from here (a copy of a dead node's directory looks the same until
 * its heartbeat goes stale).
 */
export async function judgeHolder(
  dir: string,
  name = 'lock',
  foreignStaleMs = 30_000,
): Promise<{ holder: LockHolder; state: 'alive' | 'foreign' } | undefined> {
  const resolved = path.resolve(dir);
  const files = lockFiles(name);
  const top = (await listRecords(resolved, files).catch(() => [])).at(-1);
  if (top === undefined) return undefined;
  const judged = await judgeRecord(resolved, files, top, foreignStaleMs);
  if (judged === undefined || judged.state === 'dead') return undefined;
  return { holder: judged.holder, state: judged.state };
}

/**
 * The holder answered, but has no handler for the request (yet: a process registers its
 * requests as it starts, after it has taken the lock; or a release without it).
 */
export class UnknownRequestError extends Error {
  constructor(readonly op: string) {
    super(`unknown request ${op}`);
    this.name = 'UnknownRequestError';
  }
}

/**
 * The holder let the directory go (or exited) before it answered: the request may or may not
 * have been carried out, and asking again finds the next holder, if any.
 */
export class HolderGoneError extends Error {
  constructor(readonly op: string) {
    super(`the holder let the directory go before answering ${op}`);
    this.name = 'HolderGoneError';
  }
}

export interface AskOptions {
  name?: string;
  /** How long the holder may take to answer once it has taken the request up (a requeue). */
  timeoutMs?: number;
  /**
   * How long it may take to take the request up (its acknowledgement): a live holder does at
   * once, so a longer silence is one that will not answer — stopped, or stuck.
   */
  ackTimeoutMs?: number;
}

/**
 * Asks the live holder of `dir` to run `op` (registered with `handle`) and returns its answer.
 * Rejects when nobody holds the directory, the holder has no such request, does not take it up
 * within `ackTimeoutMs` or lets the directory go before answering (HolderGoneError).
 */
export async function askHolder(
  dir: string,
  op: string,
  { name = 'lock', timeoutMs = 600_000, ackTimeoutMs = ACK_TIMEOUT_MS }: AskOptions = {},
): Promise<unknown> {
  const holder = await findHolder(dir, name);
  if (!holder) throw new Error(`nothing holds ${path.resolve(dir)}`);
  const parsed = await request(path.resolve(dir), holder.socket, op, { timeoutMs, ackTimeoutMs });
  if (parsed === undefined || parsed.code === RELEASING) throw new HolderGoneError(op);
  if (parsed.code === UNKNOWN_REQUEST) throw new UnknownRequestError(op);
  if (!parsed.ok) throw new Error(parsed.error ?? 'the holder refused the request');
  return parsed.result;
}

interface Answer {
  ok: boolean;
  result?: unknown;
  error?: string;
  /** Why it was refused, where a program needs to tell: UNKNOWN_REQUEST, RELEASING. */
  code?: string;
}

const UNKNOWN_REQUEST = 'unknown-request';
// The holder is letting the directory go: it takes up no more requests.
const RELEASING = 'releasing';
// Written by the holder as it takes a request up, before it runs it.
const ACK_LINE = `${JSON.stringify({ ack: true })}\n`;
// A holder's event loop answers within milliseconds; seconds leave room for a busy one (a
// long garbage collection, a large synchronous parse) without making its asker wait minutes.
const ACK_TIMEOUT_MS = 10_000;

/**
 * Sends `op` to the socket `name` in `dir`: its answer, or undefined when the holder closed
 * the connection without one (it let the directory go, or exited). Rejects when nothing
 * listens there, or nothing takes the request up within `ackTimeoutMs`.
 */
async function request(
  dir: string,
  name: string,
  op: string,
  { timeoutMs, ackTimeoutMs }: { timeoutMs: number; ackTimeoutMs: number },
): Promise<Answer | undefined> {
  return withSocketAddress(
    dir,
    name,
    (socketPath) =>
      new Promise<Answer | undefined>((resolve, reject) => {
        const socket = net.connect(socketPath);
        let text = '';
        const settle = (answer: Answer | undefined): void => {
          socket.destroy();
          resolve(answer);
        };
        socket.setEncoding('utf8');
        // An inactivity timeout: short until the holder says it took the request up.
        socket.setTimeout(ackTimeoutMs, () =>
          socket.destroy(
            new Error(`the holder did not take the request up within ${ackTimeoutMs} ms`),
          ),
        );
        socket.on('connect', () => socket.write(`${JSON.stringify({ op, ack: true })}\n`));
        socket.on('data', (chunk: string) => {
          text += chunk;
          if (text.startsWith(ACK_LINE)) {
            text = text.slice(ACK_LINE.length);
            socket.setTimeout(timeoutMs, () =>
              socket.destroy(new Error(`no answer within ${timeoutMs} ms`)),
            );
          }
          const end = text.indexOf('\n');
          if (end === -1) return;
          try {
            settle(JSON.parse(text.slice(0, end)) as Answer);
          } catch (error) {
            // Thrown here, it would be the process's uncaught exception, not this request's.
            socket.destroy(error as Error);
          }
        });
        socket.on('end', () => settle(undefined));
        socket.on('error', (error: NodeJS.ErrnoException) => {
          // Reset once connected: the holder closed its socket or exited under the request.
          if (error.code === 'ECONNRESET' || error.code === 'EPIPE') settle(undefined);
          else reject(error);
        });
      }),
  );
}

/** "sw-status pid 42 (npm start; port 8080) on host web-1 since 2026-…". */
export function describeHolder(holder: LockHolder): string {
  const details = Object.entries(holder.details ?? {}).map(
    ([key, value]) => `${key} ${String(value)}`,
  );
  const what = [holder.command, ...(details.length > 0 ? [details.join(', ')] : [])].join('; ');
  return `sw-status pid ${holder.pid} (${what}) on host ${holder.hostname} since ${holder.startedAt}`;
}

async function listRecords(dir: string, files: LockFiles): Promise<number[]> {
  return (await readdir(dir))
    .map((name) => files.generationOf(name))
    .filter((generation): generation is number => generation !== undefined)
    .sort((a, b) => a - b);
}

/** A record linked in with nothing in it: created on a full disk (createRecord). */
const BLANK = 'blank';

async function readRecord(
  dir: string,
  files: LockFiles,
  generation: number,
): Promise<LockHolder | typeof BLANK | undefined> {
  try {
    const text = await readFile(path.join(dir, files.recordName(generation)), 'utf8');
    if (text === '') return BLANK;
    return JSON.parse(text) as LockHolder;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // Records are written whole (link from a complete file): an unreadable one is nobody's.
    return { ...UNREADABLE, generation };
  }
}

const UNREADABLE: LockHolder = {
  pid: 0,
  hostname: '?',
  bootId: null,
  startedAt: new Date(0).toISOString(),
  command: 'unreadable lock record',
  generation: 0,
  socket: '',
};

type HolderState = 'alive' | 'dead' | 'foreign';

/** Who holds generation `generation`, and whether it lives; undefined: no such record. */
async function judgeRecord(
  dir: string,
  files: LockFiles,
  generation: number,
  foreignStaleMs: number,
  ownSocket?: string,
): Promise<{ holder: LockHolder; state: HolderState } | undefined> {
  const record = await readRecord(dir, files, generation);
  if (record === undefined) return undefined;
  if (record === BLANK) return judgeBlank(dir, files, generation, foreignStaleMs, ownSocket);
  return { holder: record, state: await holderState(dir, files, record, foreignStaleMs) };
}

/**
 * A blank record's holder answers for it on its socket. A socket that connects but cannot say
 * (too busy, a release without the request) may be it: alive, so as never to take a live
 * holder's directory. None at all: dead, or on another machine whose socket no one here can
 * reach — the heartbeat decides, as for any record from elsewhere.
 */
async function judgeBlank(
  dir: string,
  files: LockFiles,
  generation: number,
  foreignStaleMs: number,
  ownSocket: string | undefined,
): Promise<{ holder: LockHolder; state: HolderState } | undefined> {
  const unknown: LockHolder = {
    ...UNREADABLE,
    command: 'a holder whose lock record was written on a full disk',
    generation,
  };
  let unsure = false;
  for (const name of await readdir(dir)) {
    if (!files.isSocket(name) || name === ownSocket) continue;
    let answer: Answer | undefined;
    try {
      const wait = { timeoutMs: HOLDER_ANSWER_MS, ackTimeoutMs: HOLDER_ANSWER_MS };
      answer = await request(dir, name, HOLDER_REQUEST, wait);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Refused or gone: nobody listens there.
      if (code !== 'ECONNREFUSED' && code !== 'ENOENT') unsure = true;
      continue;
    }
    // No answer (closed under the request) or a refusal: it may be the holder, letting go.
    const holder = answer?.ok ? (answer.result as LockHolder | null) : undefined;
    if (holder === undefined) unsure = true;
    else if (holder?.generation === generation) return { holder, state: 'alive' };
  }
  if (unsure) return { holder: unknown, state: 'alive' };
  try {
    const { mtimeMs } = await stat(path.join(dir, files.recordName(generation)));
    return { holder: unknown, state: Date.now() - mtimeMs < foreignStaleMs ? 'foreign' : 'dead' };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { holder: unknown, state: 'dead' };
  }
}

/**
 * Writes the record to a temporary file, then links it in: false if the name was taken. On a
 * full disk the temporary file is linked in empty (see the top of this file).
 */
async function createRecord(
  dir: string,
  files: LockFiles,
  holder: LockHolder,
  nonce: string,
): Promise<boolean> {
  const temporary = path.join(dir, files.temporaryName(nonce));
  try {
    try {
      await writeFile(temporary, `${JSON.stringify(holder)}\n`, { mode: 0o600 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw error;
      // Empty, not torn: part of a record would read as an unreadable one, which is nobody's.
      await (await open(temporary, 'w', 0o600)).close();
    }
    await link(temporary, path.join(dir, files.recordName(holder.generation)));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/**
 * `alive`: its socket answers; `dead`: it does not, or its heartbeat stopped; `foreign`: on
 * another machine (or before a reboot) with a fresh heartbeat — alive as far as anyone knows.
 */
async function holderState(
  dir: string,
  files: LockFiles,
  holder: LockHolder,
  foreignStaleMs: number,
): Promise<HolderState> {
  if (!holder.socket) return 'dead';
  const sameBoot = holder.bootId !== null && holder.bootId === bootId();
  if (sameBoot || (holder.bootId === null && holder.hostname === os.hostname())) {
    return (await probe(dir, holder.socket)) ? 'alive' : 'dead';
  }
  // Another machine, or this one before a reboot: only the heartbeat can tell.
  try {
    const { mtimeMs } = await stat(path.join(dir, files.recordName(holder.generation)));
    return Date.now() - mtimeMs < foreignStaleMs ? 'foreign' : 'dead';
  } catch {
    return 'dead';
  }
}

/** Whether a process listens on the socket: refused or missing means its holder is gone. */
function probe(dir: string, name: string): Promise<boolean> {
  return withSocketAddress(dir, name, (address) => connects(address)).catch(() => false);
}

function connects(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(address);
    const done = (alive: boolean): void => {
      socket.destroy();
      resolve(alive);
    };
    socket.setTimeout(5_000, () => done(true)); // a holder too busy to answer is still there
    socket.once('connect', () => done(true));
    socket.once('error', (error: NodeJS.ErrnoException) =>
      // EAGAIN: the backlog is full, which only a live listener has.
      done(error.code === 'EAGAIN'),
    );
  });
}

async function removeStale(
  dir: string,
  files: LockFiles,
  generations: number[],
  holder: LockHolder,
): Promise<void> {
  const names = await readdir(dir);
  for (const generation of generations) {
    if (generation >= holder.generation) continue;
    const old = await readRecord(dir, files, generation);
    // A blank record names no socket: the sweep below removes its holder's dead one.
    if (old !== BLANK && old?.socket && files.isSocket(old.socket)) {
      await unlink(path.join(dir, old.socket)).catch(() => undefined);
    }
    await unlink(path.join(dir, files.recordName(generation))).catch(() => undefined);
  }
  // Sockets of holders that died before writing their record.
  for (const name of names) {
    if (!files.isSocket(name) || name === holder.socket) continue;
    if (!(await probe(dir, name))) {
      await unlink(path.join(dir, name)).catch(() => undefined);
    }
  }
}

async function removeOldTemporaries(dir: string, files: LockFiles): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!files.isTemporary(name)) continue;
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => undefined);
    // A temporary file lives for a moment; an old one was left by a crash.
    if (info && Date.now() - info.mtimeMs > 60_000) await unlink(file).catch(() => undefined);
  }
}

function holderLock(
  dir: string,
  files: LockFiles,
  holder: LockHolder,
  listener: Listener,
  handlers: Map<string, LockRequestHandler>,
  heartbeatMs: number,
): InstanceLock {
  const record = path.join(dir, files.recordName(holder.generation));
  const heartbeat = setInterval(() => {
    const now = new Date();
    void utimes(record, now, now).catch(() => undefined);
  }, heartbeatMs);
  heartbeat.unref();
  let released: Promise<void> | undefined;
  return {
    dir,
    holder,
    handle(op, handler) {
      handlers.set(op, handler);
    },
    release() {
      released ??= (async () => {
        clearInterval(heartbeat);
        // Before the record goes: a request taken up now could find the directory let go
        // under it half-way.
        listener.refuse();
        // The record first: from then on a newcomer may take over.
        await unlink(record).catch(() => undefined);
        await listener.close();
      })();
      return released;
    },
  };
}

/** The holder's socket. */
interface Listener {
  /** From now on requests are refused (RELEASING), but for HOLDER_REQUEST. */
  refuse(): void;
  /**
   * Stops accepting, answers every request not answered yet with a refusal (RELEASING) and
   * removes the socket file, without waiting for any handler or asker.
   */
  close(): Promise<void>;
}

/** Binds the holder's socket; it answers one JSON request per connection. */
async function listenOn(
  dir: string,
  name: string,
  handlers: Map<string, LockRequestHandler>,
): Promise<Listener> {
  let refusing = false;
  // Connections not answered yet: closing answers them, or their askers would wait for ever.
  const unanswered = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    unanswered.add(socket);
    socket.on('close', () => unanswered.delete(socket));
    socket.on('error', () => undefined);
    readRequest(socket, (request) => {
      if (request === undefined) return finish(socket, { ok: false, error: 'malformed request' });
      if (request.ack === true) socket.write(ACK_LINE);
      // A request must never take the holder (the service itself) down: whatever answer()
      // throws is answered as an error, never left as an unhandled rejection.
      void answer(request.op).then(
        (reply) => finish(socket, reply),
        () => finish(socket, { ok: false, error: 'internal error' }),
      );
    });
  });
  /** Ends the connection with `reply`, unless it was answered already (by close). */
  const finish = (socket: net.Socket, reply: Answer): void => {
    if (!unanswered.delete(socket)) return;
    // Closed once written, not once the asker closes too: a stopped asker must not hold
    // server.close (and so the holder's release) up.
    socket.end(`${JSON.stringify(reply)}\n`, () => socket.destroy());
  };
  const releasing: Answer = {
    ok: false,
    code: RELEASING,
    error: `the holder is letting ${dir} go`,
  };
  const answer = async (op: unknown): Promise<Answer> => {
    // Its record, from memory, for a newcomer judging a blank one (judgeBlank) even now.
    if (refusing && op !== HOLDER_REQUEST) return releasing;
    const handler = typeof op === 'string' ? handlers.get(op) : undefined;
    if (!handler) {
      // JSON, not String(): an op such as {"toString":1} cannot be made a string.
      return { ok: false, code: UNKNOWN_REQUEST, error: `unknown request ${JSON.stringify(op)}` };
    }
    try {
      return { ok: true, result: await handler() };
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  };
  // Only the holder's own requests keep a process alive, never the lock.
  server.unref();
  await withSocketAddress(
    dir,
    name,
    (address) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(address, () => {
          server.off('error', reject);
          resolve();
        });
      }),
  );
  return {
    refuse() {
      refusing = true;
    },
    async close() {
      refusing = true;
      // Stops accepting at once: connections still in the kernel's backlog are reset.
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of [...unanswered]) finish(socket, releasing);
      await closed;
      // Node removes the file only when it was bound by its plain path (see withSocketAddress).
      await unlink(path.join(dir, name)).catch(() => undefined);
    },
  };
}

/** Reads the request line of a connection, `{ op, ack? }`: undefined when it is not one. */
function readRequest(
  socket: net.Socket,
  use: (request: { op?: unknown; ack?: unknown } | undefined) => void,
): void {
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    text += chunk;
    if (text.length > 4096) {
      socket.destroy();
      return;
    }
    const end = text.indexOf('\n');
    if (end === -1) return;
    socket.removeAllListeners('data');
    let request: unknown;
    try {
      request = JSON.parse(text.slice(0, end));
    } catch {
      request = undefined;
    }
    const isObject = typeof request === 'object' && request !== null;
    use(isObject ? (request as { op?: unknown; ack?: unknown }) : undefined);
  });
}

/**
 * Runs `use` with a path to bind or connect to. A socket path is limited to 107 bytes; when
 * the absolute one is longer, the path relative to the working directory may fit, and on
 * Linux a path through an open descriptor of the directory always does
 * (/proc/self/fd/<n>/<name>, resolved by the kernel to the directory itself).
 */
async function withSocketAddress<T>(
  dir: string,
  name: string,
  use: (address: string) => Promise<T>,
): Promise<T> {
  const absolute = path.join(dir, name);
  if (Buffer.byteLength(absolute) <= MAX_SOCKET_PATH) return use(absolute);
  const relative = path.relative(process.cwd(), absolute);
  if (Buffer.byteLength(relative) <= MAX_SOCKET_PATH) return use(relative);
  if (os.platform() !== 'linux') {
    throw new Error(`${dir}: the path is too long for a socket; choose a shorter directory`);
  }
  const handle = await open(dir, 'r');
  try {
    return await use(`/proc/self/fd/${handle.fd}/${name}`);
  } finally {
    await handle.close();
  }
}

let cachedBootId: string | null | undefined;

function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null; // not Linux: the hostname stands in (see holderState)
    }
  }
  return cachedBootId;
}
