import { Client } from 'pg';
import { startEmbeddedPostgres } from '../../../src/db/embedded-postgres';
import { createLogger } from '../../../src/logger';

/**
 * Starts a throw-away embedded PostgreSQL in the directory given as argument and prints, as
 * JSON, its server encoding and how it reads a JSON escape outside ASCII (what a SQL_ASCII
 * cluster refuses). Run as a child process: jest cannot import the package (an ES module).
 */
async function main(dataDir: string): Promise<void> {
  const server = await startEmbeddedPostgres(createLogger('silent'), { dataDir, ephemeral: true });
  const client = new Client({ connectionString: server.url });
  try {
    await client.connect();
    const encoding = await client.query<{ server_encoding: string }>('SHOW server_encoding');
    const escaped = await client
      .query<{ text: string }>(`SELECT '"\\u00e9"'::jsonb #>> '{}' AS text`)
      .then((result) => result.rows[0]!.text)
      .catch((error: Error) => `error: ${error.message}`);
    process.stdout.write(
      `${JSON.stringify({ encoding: encoding.rows[0]!.server_encoding, escaped })}\n`,
    );
  } finally {
    await client.end();
    await server.stop();
  }
}

main(process.argv[2]!).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
