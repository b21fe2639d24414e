import { readFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { CALLBACK_PATH } from '../lib/request-pool';

/**
 * Open-loop load at a fixed rate, for comparing latency at the same load (wrk can only push
 * as hard as the server answers). Request k is due at start + k/rate whatever happened
 * before; its latency runs from that due time to the end of its answer, so a stalled server
 * cannot hide its queueing (no coordinated omission). Keep-alive connections, no pipelining;
 * microsecond timing. Prints one `BENCH_JSON {…}` line.
 *
 *   tsx bench/load/fixed-rate.ts <port> <pool file> <rate/s> <seconds> <connections> <warmup s>
 */

const [portArg, poolFile, rateArg, secondsArg, connectionsArg, warmupArg] = process.argv.slice(2);
const port = Number(portArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const connections = Number(connectionsArg ?? 32);
const warmupSeconds = Number(warmupArg ?? 2);

const requests = readFileSync(poolFile!, 'utf8')
  .split('\n')
  .filter((line) => line.length > 0)
  .map((line) => {
    const [signature, body] = line.split('\t') as [string, string];
    return Buffer.from(
      `POST ${CALLBACK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nX-SignalWire-Signature: ${signature}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });

interface Connection {
  socket: net.Socket;
  due: number;
  busy: boolean;
  buffer: Buffer;
}

const latencies: number[] = [];
const total = Math.floor(rate * (warmupSeconds + seconds));
const measureFrom = Math.floor(rate * warmupSeconds);
let sent = 0;
let completed = 0;
let non2xx = 0;
let errors = 0;
let wraps = 0;
const waiting: number[] = []; // due times of requests no connection was free for
const idle: Connection[] = [];
let start = 0;

function send(connection: Connection, due: number): void {
  const index = sent % requests.length;
  if (index === 0 && sent > 0) wraps++;
  sent++;
  connection.busy = true;
  connection.due = due;
  connection.socket.write(requests[index]!);
}

function dispatch(): void {
  // Oldest idle connection first: every connection stays in use, so none idles long enough
  // for the server's keep-alive timeout to close it.
  while (waiting.length > 0 && idle.length > 0) send(idle.shift()!, waiting.shift()!);
}

function onData(connection: Connection, chunk: Buffer): void {
  connection.buffer = connection.buffer.length ? Buffer.concat([connection.buffer, chunk]) : chunk;
  const headerEnd = connection.buffer.indexOf('\r\n\r\n');
  if (headerEnd === -1) return;
  const head = connection.buffer.subarray(0, headerEnd).toString('latin1');
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
  if (connection.buffer.length < headerEnd + 4 + length) return;
  const status = Number(head.slice(9, 12));
  connection.buffer = connection.buffer.subarray(headerEnd + 4 + length);
  completed++;
  if (status < 200 || status > 299) non2xx++;
  if (completed > measureFrom) latencies.push(performance.now() - connection.due);
  connection.busy = false;
  idle.push(connection);
  dispatch();
  if (completed + errors >= total) finish();
}

function tick(): void {
  const now = performance.now();
  let issued = sent + waiting.length;
  while (issued < total && start + (issued * 1000) / rate <= now) {
    waiting.push(start + (issued * 1000) / rate);
    issued++;
  }
  dispatch();
  if (issued < total) setTimeout(tick, 1);
}

let finished = false;
function finish(): void {
  if (finished) return;
  finished = true;
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const us = (ms: number) => Math.round(ms * 1000);
  const elapsed = (performance.now() - start) / 1000;
  console.log(
    `BENCH_JSON ${JSON.stringify({
      rate,
      achieved_rate: Math.round(completed / elapsed),
      requests: latencies.length,
      p50_us: us(at(0.5)),
      p90_us: us(at(0.9)),
      p99_us: us(at(0.99)),
      p999_us: us(at(0.999)),
      max_us: us(sorted.at(-1) ?? 0),
      non2xx,
      errors,
      pool_wraps: wraps,
    })}`,
  );
  process.exit(0);
}

let connected = 0;
function connect(): void {
  const connection: Connection = {
    socket: net.connect(port, '127.0.0.1'),
    due: 0,
    busy: false,
    buffer: Buffer.alloc(0),
  };
  connection.socket.setNoDelay(true);
  connection.socket.on('data', (chunk: Buffer) => onData(connection, chunk));
  connection.socket.on('error', () => undefined);
  connection.socket.on('close', () => {
    // A request lost with its connection counts as an error; the connection is replaced.
    if (finished) return;
    const at = idle.indexOf(connection);
    if (at !== -1) idle.splice(at, 1);
    if (connection.busy) {
      errors++;
      if (completed + errors >= total) finish();
    }
    connect();
  });
  connection.socket.on('connect', () => {
    idle.push(connection);
    if (++connected === connections) {
      start = performance.now();
      tick();
      // However the server behaves, the run ends: what has not answered by then failed.
      setTimeout(
        () => {
          errors += total - completed - errors;
          finish();
        },
        (warmupSeconds + seconds + 30) * 1000,
      ).unref();
    } else {
      dispatch();
    }
  });
}
for (let i = 0; i < connections; i++) connect();
