import { z } from 'zod';

/**
 * Query-string values shared by the query API's routes. Each is a zod schema: the routes
 * validate with it and the OpenAPI document (src/openapi) is generated from it.
 */

/**
 * The values of a comma-separated list, each as `each` makes it, trimmed, each once: a list is
 * a set, so a value named twice (a dashboard's saved view, a multi-select) counts once against
 * the list's bound.
 */
const commaSeparated = (text: string, each = (value: string) => value): string[] => [
  ...new Set(text.split(',').map((value) => each(value).trim())),
];

/**
 * A route's query string: `object` (strict, so that a misspelt filter does not silently return
 * everything), with repeated parameters made sense of first. Express's query parser
 * (node:querystring) makes a parameter given twice an array of its values, which is how HTTP
 * clients send an array (axios, Python's requests, URLSearchParams.append): for a list
 * (oneOrMore…) `status=delivered&status=failed` means `status=delivered,failed` — one list,
 * within the same bound, each value once. Any other parameter takes one value: a repeat is a
 * 400 naming it, not zod's "expected string, received array" (or a NaN for a number).
 */
export function queryParameters<T extends z.ZodObject>(object: T) {
  const { shape } = object;
  return z.preprocess((query, context) => {
    if (typeof query !== 'object' || query === null) return query;
    // No prototype, like the parser's own object: a parameter named __proto__ stays one.
    const merged = Object.create(null) as Record<string, unknown>;
    for (const [name, value] of Object.entries(query)) {
      const field = Object.hasOwn(shape, name) ? shape[name] : undefined;
      if (!Array.isArray(value) || field === undefined) {
        // An unknown parameter, repeated or not, is left for `object` to refuse by name.
        merged[name] = value;
      } else if (isList(field)) {
        merged[name] = value.join(',');
      } else {
        context.addIssue({
          code: 'custom',
          path: [name],
          message: `The query parameter ${name} is given ${value.length} times; it takes one value`,
        });
      }
    }
    return merged;
  }, object);
}

/** The list parameters below: the ones queryParameters lets a client repeat. */
const LISTS = new WeakSet<object>();

function repeatable<T extends z.ZodType>(schema: T): T {
  LISTS.add(schema);
  return schema;
}

function isList(field: unknown): boolean {
  let schema = field;
  while (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) {
    schema = schema.unwrap();
  }
  return typeof schema === 'object' && schema !== null && LISTS.has(schema);
}

const REPEATABLE = 'comma-separated, or the parameter repeated';

/** `status=failed,undelivered`: one value or several, comma-separated, each one of `values`. */
export function oneOrMore<const T extends readonly [string, ...string[]]>(
  values: T,
  description: string,
) {
  return repeatable(
    z
      .string()
      .transform((text) => commaSeparated(text))
      .pipe(z.array(z.enum(values)).max(values.length))
      // No `example`: Swagger UI fills a parameter's field with it, and "Try it out" then
      // sent a filter the user never chose (a list of queued and unknown messages only).
      .meta({
        description: `${description} One value or several, ${REPEATABLE}: ${values.join(', ')} (e.g. \`${values.slice(0, 2).join(',')}\`).`,
      }),
  );
}

/**
 * Text that reaches a query as a parameter. PostgreSQL's text cannot hold a NUL character (it
 * refuses one with SQLSTATE 22021), so no stored value contains one: a NUL is the caller's
 * mistake, answered 400 here rather than 500 by the database.
 */
export function storableText(maxLength: number) {
  return z
    .string()
    .min(1)
    .max(maxLength)
    .refine((value) => !value.includes('\u0000'), 'must not contain a NUL character');
}

/** Like oneOrMore, for free text values (error codes): at most 50. */
export function oneOrMoreText(maxLength: number, description: string) {
  return textList(maxLength, `${description} One value or several, ${REPEATABLE}.`);
}

/**
 * Like oneOrMoreText, for phone numbers. An E.164 number starts with `+`, which a query string
 * decodes to a space unless it is written `%2B`; `?to=+15551230000` typed in a browser or curl
 * would otherwise match nothing. A value that starts with a space before a digit therefore
 * takes the `+` back (no stored number starts with a space).
 */
export function oneOrMorePhoneNumbers(description: string) {
  return textList(
    32,
    `${description} One value or several, ${REPEATABLE}; a leading \`+\` may be left unencoded.`,
    (value) => value.replace(/^ (?=\d)/, '+'),
  );
}

/** At most 50 comma-separated values (commaSeparated), each storable text. */
function textList(maxLength: number, description: string, each = (value: string) => value) {
  return repeatable(
    z
      .string()
      .transform((text) => commaSeparated(text, each))
      .pipe(z.array(storableText(maxLength)).max(50))
      .meta({ description }),
  );
}

const INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

/**
 * A date (`2026-11-30`, midnight UTC) or a date-time with or without seconds, fraction and
 * offset (`2026-11-30T08:15`, `2026-11-30T08:15:00.5+01:00`; UTC when there is none). An
 * offset is `Z`, `±hh:mm`, `±hhmm` or `±hh` (ISO 8601 allows the hour alone, and PostgreSQL
 * reads `+01` as `+01:00`). Returns null when the text is none of these or names a day that
 * does not exist (2026-02-30).
 *
 * A fraction finer than a millisecond is rounded UP to the next one: every stored instant is a
 * whole millisecond (the write path's clock), so for those `t >= x` and `t < x` say the same as
 * `t >= ceil(x)` and `t < ceil(x)` — a bound filters as PostgreSQL would with the exact text.
 */
export function parseInstant(text: string): Date | null {
  const match = INSTANT.exec(text);
  if (!match) return null;
  const [, year, month, day, hour = '00', minute = '00', second = '00', fraction = '', offset] =
    match;
  // Set field by field: Date.UTC would read the years 0001–0099 as 1901–1999. Read back:
  // Date rolls 2026-02-30 over to March, so a day or time that does not exist is refused.
  const date = new Date(0);
  date.setUTCFullYear(Number(year), Number(month) - 1, Number(day));
  date.setUTCHours(Number(hour), Number(minute), Number(second));
  if (
    date.getUTCFullYear() !== Number(year) ||
    date.getUTCMonth() !== Number(month) - 1 ||
    date.getUTCDate() !== Number(day) ||
    date.getUTCHours() !== Number(hour) ||
    date.getUTCMinutes() !== Number(minute) ||
    date.getUTCSeconds() !== Number(second)
  ) {
    return null;
  }
  // In integers (nanoseconds), so that .029 is 29 ms, not 29.000000000000004 rounded up to 30.
  const ms = Math.ceil(Number(fraction.padEnd(9, '0')) / 1_000_000);
  let shift = 0;
  if (offset && offset.toUpperCase() !== 'Z') {
    const [, sign, hours, minutes = '00'] = /^([+-])(\d{2})(?::?(\d{2}))?$/.exec(offset)!;
    if (Number(hours) > 23 || Number(minutes) > 59) return null;
    shift = (sign === '+' ? 1 : -1) * (Number(hours) * 60 + Number(minutes)) * 60_000;
  }
  const instant = new Date(date.getTime() + ms - shift);
  // Years from 0001, as callbacks (src/callbacks/normalize.ts): nothing stored is older, and an
  // offset must not carry a bound before year 0000, which an answer echoing it (the stats'
  // created_since) could not write in ISO 8601's four digits.
  return instant.getUTCFullYear() < 1 ? null : instant;
}

/**
 * A `+hh:mm` (`+hhmm`, `+hh`) offset typed unencoded in a query string (`since=…T09:15:00+01:00`,
 * as in a browser or curl, and in this API's own examples) arrives as a space: after a time of
 * day, a space before an offset takes the `+` back. Only there: a space between date and time
 * stays one.
 */
function withUnencodedPlus(text: string): string {
  return text.replace(/(\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?) (\d{2}(?::?\d{2})?)$/, '$1+$2');
}

/** An instant as a query parameter (see parseInstant). */
export function instant(description: string) {
  return z
    .string()
    .max(40)
    .transform((text, context) => {
      const date = parseInstant(withUnencodedPlus(text));
      if (date === null) {
        context.addIssue({
          code: 'custom',
          message:
            'Expected a date (2026-11-30) or a date-time (2026-11-30T08:15:00Z), UTC unless an offset is given',
        });
        return z.NEVER;
      }
      return date;
    })
    .meta({
      description: `${description} A date (2026-11-30, midnight UTC) or a date-time with or without offset (\`Z\`, \`±hh:mm\`, \`±hhmm\` or \`±hh\`; UTC assumed); a \`+\` offset may be left unencoded.`,
      examples: [
        '2026-11-30',
        '2026-11-30T08:15:00Z',
        '2026-11-30T09:15:00+01:00',
        '2026-11-30T03:15:00-05',
      ],
    });
}

/**
 * A number in the query string, written in decimal. Not z.coerce.number(), which is Number():
 * a blank `wait=` was 0 (no long-poll, silently) while a blank `limit=` was refused, and
 * `limit=0x10`, `limit=1e2` or `limit= 10` were taken as 16, 100 and 10 — values no client
 * written against the document (`integer`) would expect to be read that way (config.ts reads
 * its numbers the same way, for the same reasons).
 */
export function decimalParameter(options: {
  /** Whole numbers only (`limit`); else a decimal point is allowed (`wait=0.5`). */
  integer: boolean;
  min: number;
  max: number;
  default: number;
  description?: string;
}) {
  const pattern = options.integer ? /^\d+$/ : /^\d+(\.\d+)?$/;
  const expected = options.integer ? 'a whole number (digits only)' : 'a decimal number';
  return z
    .string()
    .regex(pattern, `Must be ${expected}`)
    .transform(Number)
    .pipe(z.number().min(options.min).max(options.max))
    .default(options.default)
    .meta({
      ...(options.description !== undefined && { description: options.description }),
      // What the client sends, as the document's readers expect it: not the string it arrives as.
      type: options.integer ? 'integer' : 'number',
      minimum: options.min,
      maximum: options.max,
      default: options.default,
    });
}
