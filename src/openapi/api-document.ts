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
          "SignalWire's create-message endpoints, sent with the service's status callback. Every other call under `/api/laml/2010-04-01`, `/2010-04-01` and `/api/messaging` is passed through to SignalWire unchanged (the caller's Basic credentials, `SIGNALWIRE_PROJECT_IDS`, 502/504 as for sends); one that could create a message elsewhere is refused with 404.",
      },
      { name: 'Operations' },
    ],
  });
}
