import type { Express } from 'express';
import { Client } from 'pg';
import { cxmlFields, postCxml } from './callbacks';

/**
 * A signed callback for a fresh message, posted to `publicApp`: its answer, how long it took,
 * and whether it is stored — asked on a connection of its own, since the service's pool may have
 * none to spare (the tests that starve it).
 */
export async function probeCallback(
  publicApp: Express,
  databaseUrl: string,
): Promise<{ status: number; ms: number; stored: boolean }> {
  const fields = cxmlFields();
  const started = performance.now();
  const res = await postCxml(publicApp, fields);
  const ms = Math.round(performance.now() - started);
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT 1 FROM messages WHERE id = $1', [
      fields.MessageSid,
    ]);
    return { status: res.status, ms, stored: rows.length > 0 };
  } finally {
    await client.end();
  }
}
