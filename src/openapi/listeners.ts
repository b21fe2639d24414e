/**
 * The two listeners (DESIGN §1) as OpenAPI servers: every operation names the one(s) it is
 * served on.
 */

/** The host is whatever the deployment gives the public listener (its Ingress, usually). */
export const PUBLIC_LISTENER = {
  url: 'http://{host}:{port}',
  description:
    'Public listener: SignalWire’s callbacks, behind the load balancer. Port: PORT, default 8080.',
  variables: { host: { default: 'localhost' }, port: { default: '8080' } },
};

/**
 * Relative: this document is served on the internal listener, so "Try it out" on /docs calls
 * the listener, scheme and host the page came from — behind an HTTPS ingress as on localhost.
 * An absolute `http://{host}:{internal_port}` sent it to http://localhost:8081 wherever the
 * page was opened, which the page's own CSP (`default-src 'self'`) refused.
 */
export const INTERNAL_LISTENER = {
  url: '/',
  description:
    'Internal listener (the one serving this document): send proxy, query API, metrics, these docs. Port: INTERNAL_PORT, default 8081.',
};
