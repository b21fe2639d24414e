import net from 'node:net';
import type { Db } from '../../src/db/database';

/**
 * HTTP on a raw socket, for what no client library sends: requests Node answers itself, bodies
 * that stall, `Expect: 100-continue` with the body held back.
 */

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Everything received, interim answers (100 Continue) included. */
  raw: string;
}

export const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

/**
 * Writes `head` on a new connection to 127.0.0.1:`port` and reads until the service closes it.
 * With `bodyAfterContinue`, that body is written once (and only if) 100 Continue came first.
 */
export function exchangeRaw(
  port: number,
  head: string,
  bodyAfterContinue?: string,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let text = '';
    let sent = false;
    const socket = net.connect(port, '127.0.0.1', () => socket.write(head));
    socket.on('data', (data: Buffer) => {
      text += data.toString('latin1');
      if (bodyAfterContinue !== undefined && !sent && text.startsWith(CONTINUE)) {
        sent = true;
        socket.write(bodyAfterContinue);
      }
    });
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no close; got ${text}`)));
    socket.on('close', () => resolve(parseLastAnswer(text)));
  });
}

/** The final answer in `raw` (after any interim 1xx answer). */
export function parseLastAnswer(raw: string): RawAnswer {
  const start = /^(?:HTTP\/1\.1 1\d\d [^\r]*\r\n\r\n)*/.exec(raw)![0].length;
  const end = raw.indexOf('\r\n\r\n', start);
  const [statusLine, ...lines] = raw.slice(start, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: raw.slice(end + 4), raw };
}

/** The documented error body: `{ error: { code, message, request_id } }` as JSON. */
export function expectErrorShape(answer: RawAnswer, status: number, code: string): void {
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expect(JSON.parse(answer.body)).toEqual({
    error: { code, message: expect.any(String), request_id: expect.any(String) },
  });
}

/** How many events of this message are stored. */
export async function storedEventCount(db: Db, messageId: string): Promise<number> {
  const rows = await db
    .selectFrom('status_events')
    .select('seq')
    .where('message_id', '=', messageId)
    .execute();
  return rows.length;
}
