import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';

/**
 * An https server on a real port with a certificate made for this run, as SignalWire speaks.
 * The clients under test take no CA of their own: every connection made through tls.connect
 * in this test file (node:https, https-proxy-agent's tunnel, undici's) trusts this one
 * certificate besides the usual ones.
 */
export interface TlsUpstream {
  /**
   * `https://localhost:port`: a name, as a space URL is. https-proxy-agent checks the
   * certificate at the end of a tunnel against the name it sends (SNI), and sends none for
   * an address, so an address would fail there the way no real space does.
   */
  url: string;
  port: number;
  /** Method and path of every request it was sent. */
  requests: string[];
  close(): Promise<void>;
}

export async function startTlsUpstream(handler: RequestListener): Promise<TlsUpstream> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-tls-upstream-'));
  try {
    await promisify(execFile)(
      'openssl',
      [
        ...[
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
        ],
        ...['-addext', 'subjectAltName=DNS:localhost', '-keyout', 'key.pem', '-out', 'cert.pem'],
      ],
      { cwd: dir },
    );
    const key = readFileSync(path.join(dir, 'key.pem'));
    const cert = readFileSync(path.join(dir, 'cert.pem'));
    const tlsConnect = tls.connect.bind(tls) as (options: tls.ConnectionOptions) => tls.TLSSocket;
    jest
      .spyOn(tls, 'connect')
      .mockImplementation(((options: tls.ConnectionOptions) =>
        tlsConnect({ ...options, ca: [...tls.rootCertificates, cert] })) as typeof tls.connect);

    const requests: string[] = [];
    const server = createServer({ key, cert }, (req, res) => {
      requests.push(`${req.method} ${req.url}`);
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `https://localhost:${port}`,
      port,
      requests,
      close: () =>
        new Promise<void>((resolve, reject) => {
          server.close((error) => (error ? reject(error) : resolve()));
          server.closeAllConnections();
        }),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
