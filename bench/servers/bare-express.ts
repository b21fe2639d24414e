import express from 'express';

/**
 * (a) The baseline: a bare Express 5 app on a plain http server that parses the same form
 * body with express.urlencoded and answers 200 — no signature, no validation, no storage.
 */
const app = express();
app.disable('x-powered-by');
app.post('/callbacks/cxml', express.urlencoded({ extended: false, limit: '64kb' }), (_req, res) => {
  res.status(200).type('text/xml').send('<Response/>');
});
const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
