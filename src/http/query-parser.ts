import querystring from 'node:querystring';
import { AppError } from '../errors';
import { formParametersExceed, MAX_FORM_PARAMETERS } from './body-limits';

/**
 * Express's query parser (`app.set('query parser', …)`), with the form bodies' limit on
 * parameters (DESIGN §2) answered instead of applied silently.
 *
 * Express's default, `querystring.parse`, keeps the first 1,000 parameters and drops the rest
 * without a word: `?api=native&…(1,000 times)…&status=failed` reached the routes without its
 * `status`, and a filtered list answered unfiltered. Past the limit this answers 400
 * `too_many_parameters`; within it, every parameter is kept. Counting stops at the limit, so a
 * 16 KiB URL of empty-valued parameters costs what one of 1,001 does.
 */
export function parseQueryString(text: string | null | undefined): querystring.ParsedUrlQuery {
  // Express passes null for a URL without `?`.
  if (!text) return {};
  if (formParametersExceed(text, MAX_FORM_PARAMETERS)) {
    throw new AppError(
      400,
      'too_many_parameters',
      `The query string has more than ${MAX_FORM_PARAMETERS} parameters`,
    );
  }
  return querystring.parse(text, '&', '=', { maxKeys: 0 });
}
