/**
 * A timestamptz read inside JSON (row_to_json, json_build_object, jsonArrayFrom) as milliseconds
 * since the epoch. As JSON text PostgreSQL writes a timestamptz in the session's TimeZone, and on
 * a database not set to UTC an early date (a provider's year-1 "no time") comes out in local mean
 * time, with seconds in the offset and a BC suffix, which Date cannot read. A number reads the
 * same in every zone. Exact (numeric) and truncated to the millisecond, as Date read the text.
 */
export function epochMilliseconds(column: string): string {
  return `floor(extract(epoch FROM ${column}) * 1000)::float8`;
}
