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

/** `status=failed,undelivered`: one value or several, comma-separated, each one of `values`. */
export function oneOrMore<const T extends readonly [string, ...string[]]>(
  values: T,
  description: string,
) {
  return z
    .string()
    .transform((text) => commaSeparated(text))
    .pipe(z.array(z.enum(values)).max(values.length))
    .meta({
      description: `${description} One value or several, comma-separated: ${values.join(', ')}.`,
      example: values.slice(0, 2).join(','),
    });
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
  return textList(maxLength, `${description} One value or several, comma-separated.`);
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
    `${description} One value or several, comma-separated; a leading \`+\` may be left unencoded.`,
    (value) => value.replace(/^ (?=\d)/, '+'),
  );
}

/** At most 50 comma-separated values (commaSeparated), each storable text. */
function textList(maxLength: number, description: string, each = (value: string) => value) {
  return z
    .string()
    .transform((text) => commaSeparated(text, each))
    .pipe(z.array(storableText(maxLength)).max(50))
    .meta({ description });
}

const INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A date (`2026-11-30`, midnight UTC) or a date-time with or without seconds, fraction and
 * offset (`2026-11-30T08:15`, `2026-11-30T08:15:00.5+01:00`; UTC when there is none). Returns
 * null when the text is none of these or names a day that does not exist (2026-02-30).
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
    const [, sign, hours, minutes] = /^([+-])(\d{2}):?(\d{2})$/.exec(offset)!;
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
 * A `+hh:mm` offset typed unencoded in a query string (`since=…T09:15:00+01:00`, as in a browser
 * or curl, and in this API's own examples) arrives as a space: after a time of day, a space
 * before an offset takes the `+` back. Only there: a space between date and time stays one.
 */
function withUnencodedPlus(text: string): string {
  return text.replace(/(\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?) (\d{2}:?\d{2})$/, '$1+$2');
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
      description: `${description} A date (2026-11-30, midnight UTC) or a date-time with or without offset (UTC assumed); a \`+\` offset may be left unencoded.`,
      examples: ['2026-11-30', '2026-11-30T08:15:00Z', '2026-11-30T09:15:00+01:00'],
    });
}
