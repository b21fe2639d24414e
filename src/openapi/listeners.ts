/**
 * The two listeners (DESIGN §1) as OpenAPI servers: every operation names the one(s) it is
 * served on. The host is whatever the deployment gives them.
 */
const server = (port: number, name: string, description: string) => ({
  url: `http://{host}:{${name}}`,
  description: `${description} Port: ${name.toUpperCase()}, default ${port}.`,
  variables: { host: { default: 'localhost' }, [name]: { default: String(port) } },
});

export const PUBLIC_LISTENER = server(
  8080,
  'port',
  'Public listener: SignalWire’s callbacks, behind the load balancer.',
);
export const INTERNAL_LISTENER = server(
  8081,
  'internal_port',
  'Internal listener: send proxy, query API, metrics, these docs.',
);
