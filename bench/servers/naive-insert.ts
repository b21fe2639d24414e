import { createHash } from 'node:crypto';
import express from 'express';
import { Pool } from 'pg';

/**
 * (c) The naive receiver: Express, express.urlencoded, and one INSERT (one commit) per
 * callback before answering — durable, like sw-status, but without group commit.
 */
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const app = express();
app.disable('x-powered-by');
app.post(
  '/callbacks/cxml',
  express.urlencoded({ extended: false, limit: '64kb' }),
  async (req, res) => {
    const fields = req.body as Record<string, string>;
    const key = createHash('sha256')
      .update(`${fields.MessageSid}|${fields.MessageStatus}`)
      .digest();
    await pool.query(
      `INSERT INTO status_events (message_id, api, status, raw_status, source, received_at, dedupe_key, raw)
     VALUES ($1, 'cxml', $2, $2, 'callback', now(), $3, $4) ON CONFLICT (message_id, dedupe_key) DO NOTHING`,
      [fields.MessageSid, fields.MessageStatus, key, JSON.stringify(fields)],
    );
    res.status(200).type('text/xml').send('<Response/>');
  },
);
const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => server.close(() => void pool.end().then(() => process.exit(0))));
