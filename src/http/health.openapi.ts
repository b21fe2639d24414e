import { z } from 'zod';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER, PUBLIC_LISTENER } from '../openapi/listeners';

const Liveness = z
  .object({ status: z.literal('ok') })
  .strict()
  .meta({ id: 'Liveness' });

const Readiness = z
  .object({
    status: z.enum(['ready', 'unavailable', 'draining']),
    database: z.enum(['ok', 'unreachable']).optional(),
    spool: z
      .object({
        state: z.enum(['idle', 'spooling', 'replaying', 'failing', 'disabled']),
        depth: z.number().int(),
        waiting_for_schema: z.string().optional().meta({
          description:
            'While the spool waits for a database schema this release can write to: why (run the migrations).',
        }),
      })
      .optional(),
  })
  .catchall(z.unknown())
  .meta({ id: 'Readiness' });

/** /healthz and /readyz, served on both listeners (src/http/health.routes.ts). */
export function describeHealth(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/healthz',
    operationId: 'getLiveness',
    tags: ['Operations'],
    summary: 'Liveness: the process is up',
    servers: [INTERNAL_LISTENER, PUBLIC_LISTENER],
    responses: {
      200: { description: 'Up.', content: { 'application/json': { schema: Liveness } } },
    },
  });
  docs.registerPath({
    method: 'get',
    path: '/readyz',
    operationId: 'getReadiness',
    tags: ['Operations'],
    summary: 'Readiness: the replica can take traffic (database reachable, or spooling safely)',
    servers: [INTERNAL_LISTENER, PUBLIC_LISTENER],
    responses: {
      200: { description: 'Ready.', content: { 'application/json': { schema: Readiness } } },
      503: {
        description:
          'Not ready: draining; neither the database nor the spool can take events; or, since start, the database was never reached, never took writes (read-only, or a user without the write path’s privileges) or holds a schema this release cannot run on — `reason` says which.',
        content: { 'application/json': { schema: Readiness } },
      },
    },
  });
}
