import { z } from 'zod';
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

const upstream = (error: z.ZodType) => ({
  default: {
    description:
      'SignalWire’s answer, status and body verbatim — or the proxy’s own refusal in the same shape (400, 401, 403, 413, 415, 502, 503, 504). A 503 (native `shutting_down`) means this replica is shutting down and did not send the message: send it again. A 502 `upstream_unreachable` (compatibility: code 20503, “the message was not sent”) means no connection was made: the send never left and may be retried. A 504 `upstream_timeout` or a 502 `upstream_outcome_unknown` (compatibility: code 20503, “the outcome is unknown”) means SignalWire may have queued the message: do not resend blindly; its callbacks still reach your own status callback.',
    content: {
      'application/json': { schema: z.union([z.record(z.string(), z.unknown()), error]) },
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
        responses: upstream(CompatError),
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
    responses: upstream(NativeError),
  });
}
