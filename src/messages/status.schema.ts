import { z } from 'zod';
import { CANONICAL_STATUSES } from './statuses';

/**
 * A canonical status (DESIGN §3), as every answer gives it: one named enum in the OpenAPI
 * document, so a generated client gets a union it can switch over, not a bare string. The
 * service never answers another value (an unknown raw status is `unknown`, kept in
 * `raw_status`).
 */
export const StatusSchema = z
  .enum(CANONICAL_STATUSES as [string, ...string[]])
  .meta({ id: 'Status' });

/** A count per canonical status, every status present (0 included). */
export function countPerStatus<T extends z.ZodType>(count: T) {
  return z.object(Object.fromEntries(CANONICAL_STATUSES.map((status) => [status, count]))).strict();
}
