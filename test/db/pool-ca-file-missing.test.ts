import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';

/**
 * node-postgres reads the sslrootcert file named in the connection string in `new Client()`,
 * synchronously, and pg-pool creates clients inside its own callbacks: a query waiting for the
 * pool is given a new client when another connection attempt fails. With the CA file gone by
 * then (its optional ConfigMap deleted while a database restart is under way), that throw was
 * uncaught and the process exited. It must fail that query instead, as the database being
 * unavailable (the write path spools callbacks), naming the file's error code.
 */

let dir: string;
let silent: Server;
const sockets: Socket[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-pool-ca-'));
  // A database that accepts connections and never answers (a restart, a partition).
  silent = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const failure = (error: unknown) => ({
  code: (error as { code?: unknown }).code,
  unavailable: isDatabaseUnavailable(error),
});

test('When the CA file goes missing while a query waits for the pool and a connection attempt fails, then that query fails as the database unavailable, and nothing is thrown out of the pool', async () => {
  const ca = path.join(dir, 'ca.crt');
  await writeFile(ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
  const { port } = silent.address() as AddressInfo;
  const { db } = createDb(
    `postgres://sw:pw@127.0.0.1:${port}/sw?sslmode=disable&sslrootcert=${ca}`,
    1,
  );
  try {
    // The pool's one connection is being made (until its 2 s connect timeout)…
    const first = sql`SELECT 1`.execute(db).then(() => 'answered', failure);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await rm(ca);
    // …while a second query waits for it: it gets a new client when the first attempt fails.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const second = sql`SELECT 1`.execute(db).then(() => 'answered', failure);

    expect(await first).toEqual({ code: undefined, unavailable: true }); // the connect timeout
    expect(await second).toEqual({ code: 'ENOENT', unavailable: true });
    // And a query asked afresh fails the same way.
    expect(await sql`SELECT 1`.execute(db).then(() => 'answered', failure)).toEqual({
      code: 'ENOENT',
      unavailable: true,
    });
  } finally {
    await db.destroy();
  }
});
