import { z } from 'zod';
import { ErrorBody } from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER } from '../openapi/listeners';

/**
 * The send proxy (DESIGN §5) for the OpenAPI document: SignalWire's own create-message
 * endpoints, answered with SignalWire's answer verbatim, or with the API's own error shape
 * when the proxy refuses a request itself.
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
    description: 'The compatibility API’s Message resource, as SignalWire answered the create.',
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
    description: 'The native API’s create answer, as SignalWire gave it.',
  });

/** SignalWire's 201, passed through; the send is recorded under its id. */
const created = (message: z.ZodType) => ({
  201: {
    description:
      'SignalWire created the message: its answer, verbatim but for the callback URL it echoes (DESIGN §5).',
    content: {
      'application/json': { schema: message },
      '*/*': {
        schema: z
          .string()
          .meta({ description: 'Whatever SignalWire answered, should it not be JSON.' }),
      },
    },
  },
});

const upstream = (error: z.ZodType) => ({
  default: {
    description:
      'SignalWire’s answer, status and body verbatim — or the proxy’s own refusal in the same shape (400, 401, 403, 413, 415, 502, 503, 504). A 503 (native `shutting_down`) means this replica is shutting down and did not send the message: send it again. A 502 `upstream_unreachable` (compatibility: code 20503, “the message was not sent”) means no connection was made: the send never left and may be retried. A 504 `upstream_timeout` or a 502 `upstream_outcome_unknown` (compatibility: code 20503, “the outcome is unknown”) means SignalWire may have queued the message: do not resend blindly; its callbacks still reach your own status callback. A request the listener refuses itself (408, 417, 431, 501) gets the service’s `Error` shape.',
    content: {
      'application/json': {
        schema: z.union([z.record(z.string(), z.unknown()), error, ErrorBody]),
      },
      '*/*': { schema: z.string().meta({ description: 'Whatever SignalWire answered.' }) },
    },
  },
});

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
    }
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
