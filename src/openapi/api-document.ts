import { OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { describeCallbacks } from '../callbacks/callbacks.openapi';
import { describeFeed } from '../feed/feed.schema';
import { describeHealth } from '../http/health.openapi';
import { describeMessages } from '../messages/messages.schema';
import { describeMetrics } from '../metrics/metrics.openapi';
import { describeProxy } from '../proxy/proxy.openapi';
import { describeRelays } from '../relay/relays.schema';
import { describeStats } from '../stats/stats.schema';
import { createApiDocs, withOtherRefusals } from './api-docs';
import type { ApiDocs } from './api-docs';
import { INTERNAL_LISTENER } from './listeners';
import { describeOpenApi } from './openapi.routes';
import { describePage } from '../page/page.openapi';

/**
 * Every route module that serves HTTP describes its routes here, once. A new module adds its
 * `describe…` to this list (its paths, with the zod schemas it validates with).
 */
const DESCRIBERS: ReadonlyArray<(docs: ApiDocs) => void> = [
  describeCallbacks,
  describeProxy,
  describeMessages,
  describeFeed,
  describeStats,
  describeRelays,
  describeHealth,
  describeMetrics,
  describeOpenApi,
  describePage,
];

export type OpenApiDocument = ReturnType<OpenApiGeneratorV31['generateDocument']>;

/** The OpenAPI 3.1 document of both listeners, generated from the routes' zod schemas. */
export function buildApiDocument(version: string): OpenApiDocument {
  const docs = createApiDocs();
  for (const describe of DESCRIBERS) describe(docs);
  // Every operation, whoever describes it, may get a refusal written before any route.
  const definitions = docs.definitions.map((definition) =>
    definition.type === 'route'
      ? { ...definition, route: withOtherRefusals(definition.route) }
      : definition,
  );
  return new OpenApiGeneratorV31(definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'sw-status',
      version,
      description: [
        'Delivery status for SignalWire SMS/MMS: a send proxy, a callback receiver, a status',
        'history and the query API dashboards poll. Two listeners: the public one (callbacks)',
        'and the internal one (everything else); each operation names its listener.',
        'JSON fields are snake_case; timestamps ISO 8601 UTC.',
      ].join(' '),
      license: { name: 'MIT', identifier: 'MIT' },
    },
    // Operations that name no listener are served on the internal one.
    servers: [INTERNAL_LISTENER],
    tags: [
      {
        name: 'Query API',
        description: 'Internal listener, `Authorization: Bearer <API_TOKENS>`.',
      },
      { name: 'Callbacks (public listener)' },
      {
        name: 'Send proxy',
        description:
          "SignalWire's create-message endpoints, sent with the service's status callback, and SignalWire's other message calls (fetch, list, update, delete, media, native message logs), passed through. Every other call under `/api/laml/2010-04-01`, `/2010-04-01` and `/api/messaging` — any method, any path below them, e.g. `…/Accounts/{accountSid}/Applications/{sid}.json` — is passed through to SignalWire the same way: method, path, query, body, Content-Type and the caller's Basic credentials as they came, SignalWire's status, Content-Type and body back as they are, nothing recorded; the proxy's own refusals (401, 403 for a project outside `SIGNALWIRE_PROJECT_IDS`, 413, 502/504 when SignalWire does not answer) come in the API's error shape, as for sends. OpenAPI cannot name a path of any depth, so those are not listed one by one. A request other than a read that could create a message outside the create routes, or a path with a dot segment, is refused with 404.",
      },
      { name: 'Operations' },
    ],
  });
}
