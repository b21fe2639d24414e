import type { Express, Request, Response } from 'express';
import { COMPAT_CODES, compatError, nativeError } from '../signalwire/send-rules';
import type { ApiFailure, CompatErrorBody, NativeErrorBody } from '../signalwire/send-rules';
import {
  COMPAT_API_VERSION,
  compatMessageUri,
  toCompatResource,
  toMediaResource,
  toMessageLog,
} from './message-resources';
import type { SimulatedMessage } from './message-resources';

/**
 * What an app's SignalWire client reads besides one message: the compatibility Messages list,
 * a message's Media subresource, the deletion of a message or of one medium, and the native
 * message-log list. Shapes and paging as SignalWire documents them: compatibility pages carry
 * relative `*_page_uri`s (the SDK resolves them against the space URL it was given, so a walk
 * through sw-status stays on sw-status), native log pages absolute `links`; both list newest
 * first and take a `PA…`/`PB…` page token (after/before a message).
 */

export interface MessageReadsContext {
  /** Every accepted message, oldest first; deletions splice it. */
  messages: SimulatedMessage[];
  /** The compatibility request's project, or null once its 401 is answered. */
  compatProject(req: Request, res: Response): string | null;
  /** The native request's project, or null once its 401 is answered. */
  nativeProject(req: Request, res: Response): string | null;
  /** The compatibility 404 (20404) for the request's path. */
  notFound(req: Request, res: Response): void;
  fail(res: Response, failure: ApiFailure<CompatErrorBody | NativeErrorBody>): void;
}

/** SignalWire's default page and largest page, for both APIs. */
const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 1000;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

interface Page {
  items: SimulatedMessage[];
  /** Token of the page after (older messages), or null on the last page. */
  next: string | null;
  /** Token of the page before (newer messages), or null on the first page. */
  prev: string | null;
}

/**
 * One page of `list` (newest first). `PA<seq>` starts after that message, `PB<seq>` ends just
 * before it; without a token the page starts `offset` messages in. A token stays good when the
 * message it names is deleted.
 */
function pageOf(
  list: readonly SimulatedMessage[],
  size: number,
  token: string | null,
  offset = 0,
): Page {
  const match = token === null ? null : /^P([AB])(\d+)$/.exec(token);
  let start = offset;
  let end = offset + size;
  if (match) {
    const seq = Number(match[2]);
    if (match[1] === 'A') {
      start = list.findIndex((m) => m.seq < seq);
      if (start < 0) start = list.length;
      end = start + size;
    } else {
      end = list.findIndex((m) => m.seq <= seq);
      if (end < 0) end = list.length;
      start = Math.max(0, end - size);
    }
  }
  const items = list.slice(start, end);
  const first = items[0];
  const last = items[items.length - 1];
  return {
    items,
    next: last && end < list.length ? `PA${last.seq}` : null,
    prev: first && start > 0 ? `PB${first.seq}` : null,
  };
}

/** A page token as SignalWire takes it: `PA` or `PB`, then what the simulator put there. */
const isPageToken = (token: string): boolean => /^P[AB]\d+$/.test(token);

/** The query's value of `name` if given once, undefined if absent; repeated values are refused. */
function queryValue(req: Request, name: string): string | undefined | null {
  const value = (req.query as Record<string, unknown>)[name];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : null;
}

/** The UTC day (YYYY-MM-DD) of a date, for the `DateSent`/`created_*` filters. */
const dayOf = (date: Date): string => date.toISOString().slice(0, 10);

/** Newest first: the order SignalWire lists messages and logs in. */
const newestFirst = (list: readonly SimulatedMessage[]): SimulatedMessage[] =>
  [...list].sort((a, b) => b.seq - a.seq);

type Query = Record<string, string>;

/** The compatibility list's filters: each one must match (a date one needs a sent message). */
const COMPAT_FILTERS: Record<string, (m: SimulatedMessage, value: string) => boolean> = {
  To: (m, v) => m.to === v,
  From: (m, v) => m.from === v,
  Status: (m, v) => m.status === v,
  DateSent: (m, v) => m.sentAt !== null && dayOf(m.sentAt) === v,
  // Read as on-or-before / on-or-after the day, as the Twilio-derived SDKs document them.
  'DateSent<': (m, v) => m.sentAt !== null && dayOf(m.sentAt) <= v,
  'DateSent>': (m, v) => m.sentAt !== null && dayOf(m.sentAt) >= v,
};

const NATIVE_FILTERS: Record<string, (m: SimulatedMessage, value: string) => boolean> = {
  // SignalWire says "after"/"before" a date; read inclusively, so that a sweep asking for
  // today's logs sees today's.
  created_after: (m, v) => dayOf(m.createdAt) >= v,
  created_before: (m, v) => dayOf(m.createdAt) <= v,
  created_on: (m, v) => dayOf(m.createdAt) === v,
};

/** The filters the query sets, or the name of the first one it sets wrongly. */
function filtersOf(
  req: Request,
  filters: Record<string, (m: SimulatedMessage, value: string) => boolean>,
  isDate: (name: string) => boolean,
): { given: Query } | { bad: string } {
  const given: Query = {};
  for (const name of Object.keys(filters)) {
    const value = queryValue(req, name);
    if (value === undefined) continue;
    if (value === null || (isDate(name) && !DAY.test(value))) return { bad: name };
    given[name] = value;
  }
  return { given };
}

const matching = (
  list: readonly SimulatedMessage[],
  filters: Record<string, (m: SimulatedMessage, value: string) => boolean>,
  given: Query,
) => list.filter((m) => Object.entries(given).every(([name, value]) => filters[name]?.(m, value)));

/** A page size of 1 to 1000, the default when absent, or null when invalid. */
function pageSizeOf(value: string | undefined | null): number | null {
  if (value === undefined) return DEFAULT_PAGE_SIZE;
  if (value === null || !/^\d+$/.test(value)) return null;
  const size = Number(value);
  return size >= 1 && size <= MAX_PAGE_SIZE ? size : null;
}

const query = (params: Query): string => new URLSearchParams(params).toString();

export function addMessageReads(
  app: Express,
  prefixes: readonly string[],
  ctx: MessageReadsContext,
): void {
  const invalid = (res: Response, message: string) =>
    ctx.fail(res, compatError(400, COMPAT_CODES.invalidArgument, message));

  const compatMessage = (
    req: Request,
    res: Response,
    sidParam: string,
  ): SimulatedMessage | undefined => {
    const projectId = ctx.compatProject(req, res);
    if (projectId === null) return undefined;
    const m = ctx.messages.find(
      (x) => x.api === 'cxml' && x.id === req.params[sidParam] && x.projectId === projectId,
    );
    if (!m) ctx.notFound(req, res);
    return m;
  };

  const compatList = (req: Request, res: Response): void => {
    const projectId = ctx.compatProject(req, res);
    if (projectId === null) return;
    const filters = filtersOf(req, COMPAT_FILTERS, (name) => name.startsWith('DateSent'));
    if ('bad' in filters) {
      invalid(res, `${filters.bad} must be a date written YYYY-MM-DD, given once`);
      return;
    }
    const size = pageSizeOf(queryValue(req, 'PageSize'));
    if (size === null) {
      invalid(res, `PageSize must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
      return;
    }
    const pageParam = queryValue(req, 'Page') ?? '0';
    const token = queryValue(req, 'PageToken') ?? null;
    if (pageParam === null || !/^\d+$/.test(pageParam) || (token !== null && !isPageToken(token))) {
      invalid(res, 'Page must be a whole number and PageToken one this API gave');
      return;
    }
    const pageNumber = Number(pageParam);
    // The compatibility API's messages only, as its fetch: a native send has no such resource.
    const own = ctx.messages.filter((m) => m.api === 'cxml' && m.projectId === projectId);
    const list = matching(newestFirst(own), COMPAT_FILTERS, filters.given);
    const page = pageOf(list, size, token, token === null ? pageNumber * size : 0);
    // The documented base, whichever prefix was asked: SignalWire's own pages name it.
    const base = `/api/laml/${COMPAT_API_VERSION}/Accounts/${projectId}/Messages.json`;
    const uri = (params: Query) => `${base}?${query({ ...filters.given, ...params })}`;
    const sized = { PageSize: String(size) };
    res.json({
      uri: uri({ ...sized, Page: String(pageNumber), ...(token !== null && { PageToken: token }) }),
      first_page_uri: uri({ ...sized, Page: '0' }),
      next_page_uri: page.next
        ? uri({ ...sized, Page: String(pageNumber + 1), PageToken: page.next })
        : null,
      previous_page_uri: page.prev
        ? uri({ ...sized, Page: String(Math.max(0, pageNumber - 1)), PageToken: page.prev })
        : null,
      page: pageNumber,
      page_size: size,
      messages: page.items.map(toCompatResource),
    });
  };

  // SignalWire answers a deletion 204 and forgets the message: a fetch after it is a 404.
  const compatDelete = (req: Request, res: Response): void => {
    const m = compatMessage(req, res, 'sid');
    if (!m) return;
    ctx.messages.splice(ctx.messages.indexOf(m), 1);
    res.status(204).end();
  };

  const mediaList = (req: Request, res: Response): void => {
    const m = compatMessage(req, res, 'sid');
    if (!m) return;
    // At most 8 media a message: always one page.
    const uri = `${compatMessageUri(m.projectId, m.id)}/Media.json?${query({ PageSize: String(DEFAULT_PAGE_SIZE), Page: '0' })}`;
    res.json({
      uri,
      first_page_uri: uri,
      next_page_uri: null,
      previous_page_uri: null,
      page: 0,
      page_size: DEFAULT_PAGE_SIZE,
      media_list: m.mediaSids.map((_sid, index) => toMediaResource(m, index)),
    });
  };

  /** The message and the index of the medium the path names, or undefined once answered. */
  const mediumOf = (req: Request, res: Response): [SimulatedMessage, number] | undefined => {
    const m = compatMessage(req, res, 'sid');
    if (!m) return undefined;
    const index = m.mediaSids.indexOf(String(req.params['mediaSid']));
    if (index < 0) {
      ctx.notFound(req, res);
      return undefined;
    }
    return [m, index];
  };

  const mediaFetch = (req: Request, res: Response): void => {
    const found = mediumOf(req, res);
    if (found) res.json(toMediaResource(...found));
  };

  const mediaDelete = (req: Request, res: Response): void => {
    const found = mediumOf(req, res);
    if (!found) return;
    const [m, index] = found;
    m.media.splice(index, 1);
    m.mediaSids.splice(index, 1);
    res.status(204).end();
  };

  for (const prefix of prefixes) {
    const messages = `${prefix}/Accounts/:accountSid/Messages`;
    app.get(`${messages}{.json}`, compatList);
    app.delete(`${messages}/:sid{.json}`, compatDelete);
    app.get(`${messages}/:sid/Media{.json}`, mediaList);
    app.get(`${messages}/:sid/Media/:mediaSid{.json}`, mediaFetch);
    app.delete(`${messages}/:sid/Media/:mediaSid{.json}`, mediaDelete);
  }

  app.get('/api/messaging/logs', (req: Request, res: Response) => {
    const projectId = ctx.nativeProject(req, res);
    if (projectId === null) return;
    const invalidParameter = (attribute: string, message: string) =>
      ctx.fail(res, nativeError(422, 'validation_error', 'invalid_parameter', message, attribute));
    const filters = filtersOf(req, NATIVE_FILTERS, () => true);
    if ('bad' in filters) {
      invalidParameter(filters.bad, `${filters.bad} must be a date written YYYY-MM-DD`);
      return;
    }
    const size = pageSizeOf(queryValue(req, 'page_size'));
    if (size === null) {
      invalidParameter('page_size', `page_size must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
      return;
    }
    const token = queryValue(req, 'page_token') ?? null;
    if (token !== null && !isPageToken(token)) {
      invalidParameter('page_token', 'page_token must be one this API gave');
      return;
    }
    const pageNumber = Number(queryValue(req, 'page_number') ?? '0') || 0;
    const own = ctx.messages.filter((m) => m.projectId === projectId);
    const page = pageOf(matching(newestFirst(own), NATIVE_FILTERS, filters.given), size, token);
    // Absolute links, for the host the request was made to, as SignalWire writes them.
    const link = (params: Query) =>
      `${req.protocol}://${req.get('host') ?? ''}/api/messaging/logs?${query({ ...filters.given, ...params })}`;
    const sized = { page_size: String(size) };
    res.json({
      links: {
        self: link({
          page_number: String(pageNumber),
          ...sized,
          ...(token !== null && { page_token: token }),
        }),
        first: link(sized),
        ...(page.next && {
          next: link({ page_number: String(pageNumber + 1), ...sized, page_token: page.next }),
        }),
        ...(page.prev && {
          prev: link({
            page_number: String(Math.max(0, pageNumber - 1)),
            ...sized,
            page_token: page.prev,
          }),
        }),
      },
      data: page.items.map(toMessageLog),
    });
  });
}
