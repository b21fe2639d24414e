import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * A name server on a real UDP port, for the relay's resolver (c-ares, relay-dns.ts) to ask
 * instead of resolv.conf's: what it answers for a name is the zone's say, and a name the zone
 * calls `silent` gets no answer at all, as from a zone whose name server never answers.
 * Enough DNS for A and AAAA questions: anything else is answered "no such name".
 */
export type ZoneAnswer = { a?: string[]; aaaa?: string[] } | 'silent' | undefined;

export interface FakeDns {
  /** `127.0.0.1:port`, as dns.Resolver#setServers takes it. */
  server: string;
  /** Every question asked, lower-cased name and type. */
  questions: Array<{ name: string; type: 'A' | 'AAAA' | number }>;
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const NXDOMAIN = 3;

export async function startFakeDns(zone: (name: string) => ZoneAnswer): Promise<FakeDns> {
  const socket = dgram.createSocket('udp4');
  const questions: FakeDns['questions'] = [];
  socket.on('message', (query, peer) => {
    const question = parseQuestion(query);
    if (!question) return;
    const type =
      question.type === TYPE_A ? 'A' : question.type === TYPE_AAAA ? 'AAAA' : question.type;
    questions.push({ name: question.name, type });
    const answer = zone(question.name);
    if (answer === 'silent') return;
    const addresses =
      answer === undefined
        ? []
        : ((type === 'A' ? answer.a : type === 'AAAA' ? answer.aaaa : []) ?? []);
    socket.send(
      reply(query, question.end, answer === undefined ? NXDOMAIN : 0, type, addresses),
      peer.port,
      peer.address,
    );
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address() as AddressInfo;
  return {
    server: `127.0.0.1:${port}`,
    questions,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** The question's name, type and where it ends (a query asks one). */
function parseQuestion(query: Buffer): { name: string; type: number; end: number } | null {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let at = 12;
  while (at < query.length && query[at] !== 0) {
    const length = query[at]!;
    labels.push(query.subarray(at + 1, at + 1 + length).toString('latin1'));
    at += 1 + length;
  }
  if (at + 5 > query.length) return null;
  return { name: labels.join('.').toLowerCase(), type: query.readUInt16BE(at + 1), end: at + 5 };
}

/** The answer: the query's id and question, then one record per address (TTL 0). */
function reply(
  query: Buffer,
  questionEnd: number,
  rcode: number,
  type: 'A' | 'AAAA' | number,
  addresses: readonly string[],
): Buffer {
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  // QR, the query's RD, RA, and the answer's code.
  header.writeUInt16BE(0x8000 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((address) => {
    const data = Buffer.from(ipaddr.parse(address).toByteArray());
    const record = Buffer.alloc(12);
    // A pointer to the question's name, at offset 12.
    record.writeUInt16BE(0xc00c, 0);
    record.writeUInt16BE(type === 'A' ? TYPE_A : TYPE_AAAA, 2);
    record.writeUInt16BE(1, 4);
    record.writeUInt32BE(0, 6);
    record.writeUInt16BE(data.length, 10);
    return Buffer.concat([record, data]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...records]);
}
