import { z } from 'zod';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER, PUBLIC_LISTENER } from '../openapi/listeners';

const Liveness = z
  .object({ status: z.literal('ok') })
  .strict()
  .meta({ id: 'Liveness' });

/** src/db/schema-version.ts's verdict, as /readyz gives it (src/http/health.routes.ts). */
const SchemaVerdict = z
  .object({
    state: z.enum(['ok', 'ahead', 'too_old', 'too_new', 'unknown']).meta({
      description:
        '`unknown` until the database is reached; `ahead`: a newer release migrated it, still safe for this one.',
    }),
    version: z.number().int().optional().meta({ description: 'The newest migration applied.' }),
    needs: z
      .number()
      .int()
      .optional()
      .meta({ description: 'The newest migration this release has.' }),
    oldest_reader: z
      .number()
      .int()
      .optional()
      .meta({ description: 'The oldest release the applied migrations leave safe to run.' }),
    missing: z
      .array(z.string())
      .optional()
      .meta({ description: 'Migrations this release needs that are not applied.' }),
  })
  .strict();

const Readiness = z
  .object({
    status: z.enum(['ready', 'unavailable', 'draining']),
    database: z.enum(['ok', 'unreachable']).optional().meta({
      description:
        '`unreachable`: the database cannot take this replica’s writes — no answer, or an answer refusing them (read-only after a failover, a refused login); `spool.retrying` then gives the SQLSTATE when the server answered one.',
    }),
    schema: SchemaVerdict.optional(),
    reason: z
      .string()
      .optional()
      .meta({ description: 'Why the replica is not ready, in one line.' }),
    spool: z
      .object({
        state: z.enum(['idle', 'spooling', 'replaying', 'failing', 'disabled']),
        depth: z.number().int(),
        dead_letters: z
          .number()
          .int()
          .meta({ description: 'Spooled events that can never be stored as they are.' }),
        retrying: z.string().optional().meta({
          description:
            'While the database refuses writes (e.g. `25006`: it is read-only, a standby after a failover), or a replay write is retried after a transient failure (e.g. `55P03`: a lock held elsewhere): its SQLSTATE.',
        }),
        waiting_for_schema: z.string().optional().meta({
          description:
            'While the spool waits for a database schema this release can write to: why (run the migrations).',
        }),
      })
      .strict()
      .optional(),
  })
  .strict()
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
