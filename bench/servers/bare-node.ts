import http from 'node:http';

/** (d) The ceiling: Node's http server reading and parsing the form body, nothing else. */
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const fields = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    res.writeHead(fields.has('MessageSid') ? 200 : 400, { 'Content-Type': 'text/xml' });
    res.end('<Response/>');
  });
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
