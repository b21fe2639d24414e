import { open } from 'node:fs/promises';

/**
 * Reading spool files a line at a time, in bounded memory. A file is never read whole: a
 * segment of acknowledged 64 KiB callbacks (about 150 kB a line: the payload, and its base64
 * copy for the relay) passes V8's longest string (about 512 MiB) at some 3,600 lines, and a
 * replay that reads it as one string fails on every attempt — the spool then never drains.
 * Not readline: it builds each line whatever its length, and a damaged file can hold a "line"
 * of any size.
 */

/**
 * One complete line: where it is, and its text unless it is longer than `maxLineBytes` or not
 * UTF-8.
 */
export interface SpoolLine {
  /** Byte offset of its first byte. */
  offset: number;
  /** Its length in bytes, newline excluded. */
  bytes: number;
  /**
   * Undefined for a line longer than `maxLineBytes` (no event is that long) and for one that is
   * not UTF-8 (then `undecodable` holds its bytes).
   */
  text: string | undefined;
  /**
   * The bytes of a line within `maxLineBytes` that are not UTF-8. No append writes such a line
   * (JSON.stringify escapes lone surrogates), so it is damage: decoded leniently, each bad byte
   * would become U+FFFD and the line a different one — replayed as an event nobody sent when it
   * still parses, or dead-lettered with its original bytes lost. Kept as they are instead.
   */
  undecodable?: Buffer;
}

// Strict: a byte sequence that is not UTF-8 is an error, not U+FFFD. The BOM is kept as
// Buffer#toString kept it (a line starting with one is not JSON, so it stays unreadable).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `bytes` as UTF-8 text, or undefined when they are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

// One read's worth: large enough that a segment takes few system calls.
const READ_BYTES = 1 << 20;
const NEWLINE = 0x0a;

/**
 * Every complete line of `file`, in order. A last line without its newline is not one: it is
 * a write torn by a crash, whose append never returned, so nothing acknowledged it.
 * `readBytes` is how much one read takes (a test makes lines span many reads).
 */
export async function* readLines(
  file: string,
  maxLineBytes: number,
  readBytes = READ_BYTES,
): AsyncGenerator<SpoolLine, void, undefined> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(readBytes);
    // The start of the current line when it began in an earlier read (copies: the buffer is
    // reused), and its length so far; past maxLineBytes only the length is kept.
    let pieces: Buffer[] = [];
    let lineBytes = 0;
    let lineOffset = 0;
    for (let position = 0; ;) {
      const { bytesRead } = await handle.read(buffer, 0, readBytes, position);
      if (bytesRead === 0) return;
      const view = buffer.subarray(0, bytesRead);
      let start = 0;
      for (let end = view.indexOf(NEWLINE); end !== -1; end = view.indexOf(NEWLINE, start)) {
        const bytes = lineBytes + (end - start);
        if (bytes <= maxLineBytes) {
          const raw =
            pieces.length === 0
              ? view.subarray(start, end)
              : Buffer.concat([...pieces, view.subarray(start, end)]);
          const text = decodeUtf8(raw);
          // A copy: `raw` may be a view of the reused read buffer.
          if (text === undefined)
            yield { offset: lineOffset, bytes, text, undecodable: Buffer.from(raw) };
          else yield { offset: lineOffset, bytes, text };
        } else yield { offset: lineOffset, bytes, text: undefined };
        pieces = [];
        lineBytes = 0;
        lineOffset = position + end + 1;
        start = end + 1;
      }
      const rest = bytesRead - start;
      if (rest > 0) {
        if (lineBytes + rest <= maxLineBytes) pieces.push(Buffer.from(view.subarray(start)));
        else pieces = [];
        lineBytes += rest;
      }
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

/** Newlines in `file`, counted without holding it in memory. */
export async function countLines(file: string): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(READ_BYTES);
    let lines = 0;
    for (let position = 0; ;) {
      const { bytesRead } = await handle.read(buffer, 0, READ_BYTES, position);
      if (bytesRead === 0) return lines;
      const view = buffer.subarray(0, bytesRead);
      for (
        let index = view.indexOf(NEWLINE);
        index !== -1;
        index = view.indexOf(NEWLINE, index + 1)
      )
        lines++;
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}
