import type { RequestHandler } from 'express';

/**
 * More proxies than any path to this service has: a load balancer, an Ingress, a mesh sidecar.
 */
export const MAX_FORWARDED_HOPS = 32;

/**
 * Keeps the last MAX_FORWARDED_HOPS addresses of X-Forwarded-For: the hops nearest this
 * service, the only ones TRUST_PROXY can speak for. Express finds `req.ip` by walking the
 * header from the right while TRUST_PROXY trusts each address, and with a list of subnets
 * (`10.0.0.0/8,…`) every address is parsed against each subnet. The walk stops at the first
 * address not trusted, but a client whose own address is inside them (a pod calling the
 * public listener directly, or anything behind a proxy that passes the header on without
 * appending) and that wrote 1,200 such addresses (14 KiB, within Node's header limit) cost
 * ~85 ms of event loop per request, before its credentials were looked at. The client address
 * found is the same for every chain of real proxies; for a longer one it is still an address
 * the client wrote, as it was.
 */
export function boundForwardedFor(): RequestHandler {
  return (req, _res, next) => {
    const header = req.headers['x-forwarded-for'];
    if (typeof header === 'string') req.headers['x-forwarded-for'] = lastHops(header);
    next();
  };
}

function lastHops(header: string): string {
  let comma = header.length;
  for (let hops = 0; hops < MAX_FORWARDED_HOPS; hops++) {
    if (comma === 0) return header;
    comma = header.lastIndexOf(',', comma - 1);
    if (comma === -1) return header;
  }
  return header.slice(comma + 1).trimStart();
}
