import { z } from 'zod';
import { ErrorBody } from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER } from '../openapi/listeners';

/**
 * The send proxy (DESIGN §5) for the OpenAPI document: SignalWire's own create-message
 * endpoints, and the message calls passed through to SignalWire (pass-through.routes.ts),
 * answered with SignalWire's answer verbatim, or with the API's own error shape when the proxy
 * refuses a request itself.
 */
const CompatError = z
  .object({
    code: z.number().int(),
    message: z.string(),
    more_info: z.string(),
    status: z.number().int(),
  })
  .meta({ id: 'CompatibilityError', description: 'The compatibility API’s error shape.' });

const NativeError = z
  .object({
    errors: z.array(
      z.object({
        type: z.string(),
        code: z.string(),
        message: z.string(),
        attribute: z.string().nullable(),
        url: z.string(),
      }),
    ),
  })
  .meta({ id: 'NativeError', description: 'The native API’s error shape.' });

const CompatCreate = z
  .object({
    To: z.string(),
    From: z.string().optional(),
    MessagingServiceSid: z.string().optional(),
    Body: z.string().optional(),
    MediaUrl: z.union([z.string(), z.array(z.string())]).optional(),
    StatusCallback: z
      .string()
      .optional()
      .meta({ description: 'Kept as client_status_callback; SignalWire gets the service’s URL.' }),
    ApplicationSid: z.string().optional().meta({
      description:
        'Without StatusCallback: the Application’s message status callback becomes client_status_callback.',
    }),
    MaxPrice: z.string().optional(),
    ValidityPeriod: z.string().optional(),
    SendAsMms: z.string().optional(),
  })
  .meta({ id: 'CompatibilityCreateMessage' });

const NativeCreate = z
  .object({
    to: z.string(),
    from: z.string(),
    body: z.string().optional(),
    media: z.array(z.string()).optional(),
    send_as_mms: z.boolean().optional(),
    status_callback: z.string().optional(),
    custom_variables: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: 'NativeCreateMessage' });

/**
 * SignalWire's answers pass through verbatim and SignalWire adds fields over time, so every
 * object takes properties it does not name, and only what a create always answers is
 * required. Twilio's API, which the compatibility API mirrors, writes counts and prices as
 * strings and error codes as numbers: either spelling comes through as it was sent.
 */
const COUNT = z.union([z.number().int(), z.string()]);
const ERROR_CODE = z.union([z.string(), z.number().int()]).nullable();

const CompatMessage = z
  .object({
    sid: z.string().meta({ description: 'The message id (a UUID): `MessageSid` in callbacks.' }),
    status: z.string().meta({
      description:
        'queued, initiated, sending, sent, delivered, undelivered, failed (a create answers `queued`).',
      example: 'queued',
    }),
    account_sid: z.string().optional().meta({ description: 'The project.' }),
    api_version: z.string().optional(),
    to: z.string().optional(),
    from: z.string().nullable().optional(),
    body: z.string().nullable().optional(),
    num_segments: COUNT.optional(),
    num_media: COUNT.optional(),
    direction: z.string().optional().meta({ example: 'outbound-api' }),
    date_created: z
      .string()
      .optional()
      .meta({ description: 'RFC 2822.', example: 'Mon, 13 Aug 2018 21:38:46 +0000' }),
    date_sent: z.string().nullable().optional(),
    date_updated: z.string().optional(),
    error_code: ERROR_CODE.optional(),
    error_message: z.string().nullable().optional(),
    price: z.union([z.number(), z.string()]).nullable().optional(),
    price_unit: z.string().nullable().optional(),
    messaging_service_sid: z.string().nullable().optional(),
    uri: z.string().optional(),
    subresource_uris: z.record(z.string(), z.string()).optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'CompatibilityMessage',
    description: 'The compatibility API’s Message resource, as SignalWire answered.',
  });

const NativeMessage = z
  .object({
    id: z.string().meta({ description: 'The message id (a UUID): `id` in callbacks.' }),
    status: z.string().meta({
      description:
        'queued, initiated, sent, delivered, undelivered, failed, read (a create answers `queued`).',
      example: 'queued',
    }),
    from: z.string().optional(),
    to: z.string().optional(),
    body: z.string().optional(),
    direction: z.string().optional().meta({ example: 'outbound' }),
    kind: z.string().optional().meta({ description: '`sms` or `mms`.' }),
    media: z.array(z.string()).optional(),
    number_of_segments: COUNT.optional(),
    error_code: ERROR_CODE.optional(),
    error_message: z.string().nullable().optional(),
    created_at: z.string().optional().meta({ description: 'ISO 8601.' }),
    project_id: z.string().optional(),
    status_callback_url: z.string().nullable().optional().meta({
      description:
        'The caller’s own status callback, or null when it gave none: never the service’s callback URL.',
    }),
    message_uri: z.string().optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'NativeMessage',
    description:
      'The native API’s message resource (a create’s or an update’s answer), as SignalWire gave it.',
  });

/** SignalWire's answer as JSON of `schema`, or whatever else it sent. */
const answerContent = (schema: z.ZodType) => ({
  'application/json': { schema },
  '*/*': {
    schema: z
      .string()
      .meta({ description: 'Whatever SignalWire answered, should it not be JSON.' }),
  },
});

/** SignalWire's 201, passed through; the send is recorded under its id. */
const created = (message: z.ZodType) => ({
  201: {
    description:
      'SignalWire created the message: its answer, verbatim but for the callback URL it echoes (DESIGN §5).',
    content: answerContent(message),
  },
});

/** A send's answers besides the 201: SignalWire's, or the proxy's own refusals. */
const SEND_OTHER_ANSWERS =
  'SignalWire’s answer, status and body verbatim — or the proxy’s own refusal in the same shape (400, 401, 403, 413, 415, 502, 503, 504). A 503 (native `shutting_down`, or `busy`: the replica holds as many calls to SignalWire and request bodies as it may) means this replica did not send the message: send it again. A 502 `upstream_unreachable` (compatibility: code 20503, “the message was not sent”) means no connection was made: the send never left and may be retried. A 504 `upstream_timeout` or a 502 `upstream_outcome_unknown` (compatibility: code 20503, “the outcome is unknown”) means SignalWire may have queued the message: do not resend blindly; its callbacks still reach your own status callback. A request the listener refuses itself (408, 417, 431, 501) gets the service’s `Error` shape.';

/** SignalWire's other answers, verbatim, or the proxy's own refusal in the API's shape. */
const upstream = (error: z.ZodType, description = SEND_OTHER_ANSWERS) => ({
  default: {
    description,
    content: {
      'application/json': {
        schema: z.union([z.record(z.string(), z.unknown()), error, ErrorBody]),
      },
      '*/*': { schema: z.string().meta({ description: 'Whatever SignalWire answered.' }) },
    },
  },
});

/** The compatibility API's page of messages (`GET …/Messages.json`). */
const CompatMessagePage = z
  .object({
    messages: z.array(CompatMessage),
    page: COUNT.optional(),
    page_size: COUNT.optional(),
    uri: z.string().optional(),
    first_page_uri: z.string().nullable().optional(),
    next_page_uri: z.string().nullable().optional(),
    previous_page_uri: z.string().nullable().optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'CompatibilityMessagePage',
    description: 'A page of messages, as SignalWire answered.',
  });

const CompatMedia = z
  .object({
    sid: z.string(),
    parent_sid: z.string().optional(),
    content_type: z.string().optional(),
    uri: z.string().optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'CompatibilityMedia',
    description: 'A message’s media item, as SignalWire answered.',
  });

/** A list SignalWire answers: its items under `field`, and whatever else it sends. */
const listOf = (field: string, item: z.ZodType, id: string, description: string) =>
  z
    .object({ [field]: z.array(item) })
    .catchall(z.unknown())
    .meta({ id, description: `${description}, as SignalWire answered.` });

const CompatMediaPage = listOf(
  'media_list',
  CompatMedia,
  'CompatibilityMediaPage',
  'A message’s media',
);

/** What the service's sweep reads of a native message (src/reconcile/lookup-client.ts). */
const NativeMessageLog = z
  .object({
    id: z.string(),
    status: z.string().optional(),
    error_code: ERROR_CODE.optional(),
    error_message: z.string().nullable().optional(),
    source: z.string().optional(),
  })
  .catchall(z.unknown())
  .meta({ id: 'NativeMessageLog', description: 'A native message log, as SignalWire answered.' });

const NativeMessageLogPage = listOf(
  'data',
  NativeMessageLog,
  'NativeMessageLogPage',
  'A page of message logs',
);

/** An update's body: SignalWire documents one use, emptying the text (`field`). */
const updateOf = (field: 'Body' | 'body', id: string) =>
  z
    .object({
      [field]: z.string().optional().meta({
        description:
          'SignalWire’s redaction: `""` empties the message’s text, here too once SignalWire accepts it.',
      }),
    })
    .catchall(z.unknown())
    .meta({ id });

const CompatUpdate = updateOf('Body', 'CompatibilityUpdateMessage');
const NativeUpdate = updateOf('body', 'NativeUpdateMessage');

/** SignalWire's success, passed back (`schema` null: a deletion's empty 204). */
const passedBack = (status: 200 | 204, schema: z.ZodType | null, description: string) => ({
  [status]: {
    description: `${description} SignalWire’s answer, status and body as it came.`,
    ...(schema && { content: answerContent(schema) }),
  },
});

/** Any other answer of SignalWire's, or the proxy's own refusal of a call it passes through. */
const PASS_THROUGH_OTHER_ANSWERS =
  'SignalWire’s answer, status and body verbatim — or the proxy’s own refusal in the same shape: 401 (no credentials), 403 (a project outside SIGNALWIRE_PROJECT_IDS), 404 (a path with a dot segment, or a request other than a read that could create a message outside the create routes), 400 or 413 (a body that cannot be read or is over PROXY_BODY_LIMIT), 503 `busy` (compatibility: code 20503; the replica holds as many calls to SignalWire and request bodies as it may: not sent, safe to retry), 500, 502 `upstream_unreachable` (compatibility: code 20503, “the request was not sent”: safe to retry), 502 `upstream_outcome_unknown` or 504 `upstream_timeout` (compatibility: code 20503: SignalWire may have carried it out). A request the listener refuses itself (408, 417, 431, 501) gets the service’s `Error` shape.';

const PASSED_AS_IT_CAME =
  'Passed to SIGNALWIRE_SPACE_URL as it came — method, path, query, body, Content-Type and the caller’s Basic credentials — and SignalWire’s status, Content-Type and body come back as they are; nothing is recorded.';

const FORGETS_TEXT =
  'The answer is read whole, and once SignalWire accepts it (2xx) the message’s stored text is removed here too (its status history stays); so is it when the outcome is unknown (504, or 502 `upstream_outcome_unknown`: SignalWire may have done it), unless the message is recorded as another project’s, and only for credentials SignalWire has already accepted (a 2xx to a call made with them, e.g. the app’s sends, within the hour, in the same replica): the proxy never checks a password itself, so otherwise the text is kept and the log says why.';

const ECHOES_CALLBACK =
  'Where the answer echoes the callback URL the proxy gave the send (native `status_callback_url`), the caller sees its own callback URL (or null), never the service’s.';

const DELETES_MESSAGE = `${PASSED_AS_IT_CAME} ${FORGETS_TEXT} A 404 for a message recorded as the caller’s project’s (already deleted, e.g. by an earlier try answered late) removes it too, on the same condition of accepted credentials (a 404 can be SignalWire’s routing, before any password is checked).`;

/** A deletion's answer: 204, no body. */
const DELETED = { status: 204, schema: null, description: 'Deleted.' } as const;

type PassThroughOperation = {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** Under the API's prefix (compatibility: under `/Accounts/{accountSid}`). */
  path: string;
  operationId: string;
  summary: string;
  description: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  answer: { status: 200 | 204; schema: z.ZodType | null; description: string };
};

const MESSAGE_SID = z.object({ accountSid: z.string(), messageSid: z.string() });
const MEDIA_SID = MESSAGE_SID.extend({ mediaSid: z.string() });

/** SignalWire's compatibility message calls an app (or the SDK's `messages(…)`) makes. */
const COMPAT_PASS_THROUGH: readonly PassThroughOperation[] = [
  {
    method: 'get',
    path: '/Messages',
    operationId: 'listCompatibilityMessages',
    summary: 'List messages (compatibility API), passed through to SignalWire',
    description: PASSED_AS_IT_CAME,
    params: z.object({ accountSid: z.string() }),
    query: z
      .object({
        To: z.string(),
        From: z.string(),
        Status: z.string(),
        DateSent: z.string().meta({ description: 'YYYY-MM-DD; also `DateSent<` and `DateSent>`.' }),
        PageSize: z.string().meta({ description: 'At most 1000.' }),
        PageToken: z.string(),
      })
      .partial(),
    answer: { status: 200, schema: CompatMessagePage, description: 'A page of messages.' },
  },
  {
    method: 'get',
    path: '/Messages/{messageSid}',
    operationId: 'fetchCompatibilityMessage',
    summary: 'Fetch a message (compatibility API), passed through to SignalWire',
    description: PASSED_AS_IT_CAME,
    params: MESSAGE_SID,
    answer: { status: 200, schema: CompatMessage, description: 'The message.' },
  },
  {
    method: 'post',
    path: '/Messages/{messageSid}',
    operationId: 'updateCompatibilityMessage',
    summary: 'Update (redact) a message (compatibility API), passed through to SignalWire',
    description: `${PASSED_AS_IT_CAME} ${FORGETS_TEXT} (Only an update that empties \`Body\` removes it.)`,
    params: MESSAGE_SID,
    body: CompatUpdate,
    answer: { status: 200, schema: CompatMessage, description: 'The message, updated.' },
  },
  {
    method: 'delete',
    path: '/Messages/{messageSid}',
    operationId: 'deleteCompatibilityMessage',
    summary: 'Delete a message (compatibility API), passed through to SignalWire',
    description: DELETES_MESSAGE,
    params: MESSAGE_SID,
    answer: DELETED,
  },
  {
    method: 'get',
    path: '/Messages/{messageSid}/Media',
    operationId: 'listCompatibilityMedia',
    summary: 'List a message’s media (compatibility API), passed through to SignalWire',
    description: PASSED_AS_IT_CAME,
    params: MESSAGE_SID,
    answer: { status: 200, schema: CompatMediaPage, description: 'The message’s media.' },
  },
  {
    method: 'get',
    path: '/Messages/{messageSid}/Media/{mediaSid}',
    operationId: 'fetchCompatibilityMedia',
    summary: 'Fetch a message’s media item (compatibility API), passed through to SignalWire',
    description: PASSED_AS_IT_CAME,
    params: MEDIA_SID,
    answer: { status: 200, schema: CompatMedia, description: 'The media item.' },
  },
  {
    method: 'delete',
    path: '/Messages/{messageSid}/Media/{mediaSid}',
    operationId: 'deleteCompatibilityMedia',
    summary: 'Delete a message’s media item (compatibility API), passed through to SignalWire',
    description: PASSED_AS_IT_CAME,
    params: MEDIA_SID,
    answer: DELETED,
  },
];

const NATIVE_ID = z.object({ id: z.string() });

/** SignalWire's native message calls besides the create (the native API has no message GET). */
const NATIVE_PASS_THROUGH: readonly PassThroughOperation[] = [
  {
    method: 'patch',
    path: '/messages/{id}',
    operationId: 'updateNativeMessage',
    summary: 'Update (redact) a message (native API), passed through to SignalWire',
    description: `${PASSED_AS_IT_CAME} ${ECHOES_CALLBACK} ${FORGETS_TEXT} (Only an update with \`"body": ""\` removes it.)`,
    params: NATIVE_ID,
    body: NativeUpdate,
    answer: { status: 200, schema: NativeMessage, description: 'The message, updated.' },
  },
  {
    method: 'delete',
    path: '/messages/{id}',
    operationId: 'deleteNativeMessage',
    summary: 'Delete a message (native API), passed through to SignalWire',
    description: DELETES_MESSAGE,
    params: NATIVE_ID,
    answer: DELETED,
  },
  {
    method: 'get',
    path: '/logs',
    operationId: 'listNativeMessageLogs',
    summary: 'List message logs (native API), passed through to SignalWire',
    description: PASSED_AS_IT_CAME,
    query: z
      .object({
        created_after: z.string(),
        created_before: z.string(),
        page_size: z.string().meta({ description: 'At most 1000.' }),
        page_token: z.string(),
      })
      .partial(),
    answer: { status: 200, schema: NativeMessageLogPage, description: 'A page of message logs.' },
  },
  {
    method: 'get',
    path: '/logs/{id}',
    operationId: 'fetchNativeMessageLog',
    summary: 'Fetch a message log (native API), passed through to SignalWire',
    description: `${PASSED_AS_IT_CAME} What the service’s own sweep reads.`,
    params: NATIVE_ID,
    answer: { status: 200, schema: NativeMessageLog, description: 'The message log.' },
  },
];

function registerPassThrough(
  docs: ApiDocs,
  op: PassThroughOperation,
  path: string,
  operationId: string,
  error: z.ZodType,
): void {
  const bodyTypes = op.path.startsWith('/messages')
    ? ['application/json']
    : ['application/x-www-form-urlencoded', 'application/json'];
  docs.registerPath({
    method: op.method,
    path,
    operationId,
    tags: ['Send proxy'],
    summary: op.summary,
    description: op.description,
    servers: [INTERNAL_LISTENER],
    security: [{ signalwireBasic: [] }],
    request: {
      ...(op.params && { params: op.params }),
      ...(op.query && { query: op.query }),
      ...(op.body && {
        body: {
          required: false,
          content: Object.fromEntries(bodyTypes.map((type) => [type, { schema: op.body! }])),
        },
      }),
    },
    responses: {
      ...passedBack(op.answer.status, op.answer.schema, op.answer.description),
      ...upstream(error, PASS_THROUGH_OTHER_ANSWERS),
    },
  });
}

export function describeProxy(docs: ApiDocs): void {
  docs.registerComponent('securitySchemes', 'signalwireBasic', {
    type: 'http',
    scheme: 'basic',
    description: 'The caller’s SignalWire `project_id:api_token`, passed through upstream.',
  });
  for (const prefix of ['/api/laml/2010-04-01', '/2010-04-01']) {
    for (const extension of ['', '.json']) {
      docs.registerPath({
        method: 'post',
        path: `${prefix}/Accounts/{accountSid}/Messages${extension}`,
        // One per spelling: an operationId is unique in a document.
        operationId: `sendCompatibilityMessage${prefix === '/2010-04-01' ? 'Short' : ''}${extension ? 'Json' : ''}`,
        tags: ['Send proxy'],
        summary: 'Send a message (compatibility API), with the service’s status callback',
        servers: [INTERNAL_LISTENER],
        security: [{ signalwireBasic: [] }],
        request: {
          params: z.object({ accountSid: z.string() }),
          body: {
            required: true,
            content: {
              'application/x-www-form-urlencoded': { schema: CompatCreate },
              'application/json': { schema: CompatCreate },
            },
          },
        },
        responses: { ...created(CompatMessage), ...upstream(CompatError) },
      });
      // The calls passed through (pass-through.routes.ts): each spelling, as the create's.
      for (const op of COMPAT_PASS_THROUGH) {
        const id = `${op.operationId}${prefix === '/2010-04-01' ? 'Short' : ''}${extension ? 'Json' : ''}`;
        const path = `${prefix}/Accounts/{accountSid}${op.path}${extension}`;
        registerPassThrough(docs, op, path, id, CompatError);
      }
    }
  }
  for (const op of NATIVE_PASS_THROUGH) {
    registerPassThrough(docs, op, `/api/messaging${op.path}`, op.operationId, NativeError);
  }
  docs.registerPath({
    method: 'post',
    path: '/api/messaging/messages',
    operationId: 'sendNativeMessage',
    tags: ['Send proxy'],
    summary: 'Send a message (native API), with the service’s status callback',
    servers: [INTERNAL_LISTENER],
    security: [{ signalwireBasic: [] }],
    request: {
      body: { required: true, content: { 'application/json': { schema: NativeCreate } } },
    },
    responses: { ...created(NativeMessage), ...upstream(NativeError) },
  });
}
