import { z } from 'zod';
import { errorResponses } from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';
import { PUBLIC_LISTENER } from '../openapi/listeners';

/**
 * How SignalWire calls the public listener (DESIGN §2), for the OpenAPI document. The routes
 * parse these bodies themselves (signatures cover the raw bytes): the schemas describe the
 * fields they read.
 */
const CxmlCallback = z
  .object({
    MessageSid: z.string().meta({ description: 'The message id (a UUID).' }),
    MessageStatus: z.string().meta({ example: 'delivered' }),
    ErrorCode: z.string().optional(),
    AccountSid: z.string().optional(),
    From: z.string().optional(),
    To: z.string().optional(),
    Body: z.string().optional().meta({ description: 'Not stored unless STORE_BODY=true.' }),
    NumMedia: z.string().optional(),
    NumSegments: z.string().optional(),
  })
  .catchall(z.string())
  .meta({ id: 'CxmlCallback', description: 'Compatibility (cXML/LaML) status callback.' });

const NativeCallback = z
  .object({
    id: z.string().meta({ description: 'The message id (a UUID).' }),
    status: z.string().meta({ example: 'delivered' }),
    project_id: z.string().optional(),
    from: z.string().optional(),
    to: z.string().optional(),
    number_of_segments: z.number().int().optional(),
    timestamp: z.string().optional(),
    error_code: z.string().nullable().optional(),
    error_message: z.string().nullable().optional(),
  })
  .catchall(z.unknown())
  .meta({ id: 'NativeCallback', description: 'Native messaging API status callback.' });

const signatureHeaders = z.object({
  'X-SignalWire-Signature': z.string().optional().meta({
    description:
      'HMAC-SHA1 with a SIGNALWIRE_SIGNING_KEYS key: base64 over URL + sorted form parameters (form, GET), hex over URL + raw body (JSON). X-Twilio-Signature is accepted too. Optional when the path carries a callback token.',
  }),
});

const token = z.object({
  token: z.string().meta({ description: 'The per-send callback token the proxy put in the URL.' }),
});

const refusals = errorResponses(400, 401, 403, 413, 415, 429, 503);

export function describeCallbacks(docs: ApiDocs): void {
  for (const withToken of [false, true]) {
    const suffix = withToken ? '/{token}' : '';
    const idSuffix = withToken ? 'WithToken' : '';
    const params = withToken ? { params: token } : {};
    const acknowledged = {
      description: 'Durably stored (or a duplicate of a stored event): SignalWire stops retrying.',
    };
    docs.registerPath({
      method: 'post',
      path: `/callbacks/cxml${suffix}`,
      operationId: `receiveCxmlCallback${idSuffix}`,
      tags: ['Callbacks (public listener)'],
      summary: 'A compatibility-API status callback',
      servers: [PUBLIC_LISTENER],
      request: {
        ...params,
        headers: signatureHeaders,
        body: {
          required: true,
          content: {
            'application/x-www-form-urlencoded': { schema: CxmlCallback },
            'application/json': { schema: CxmlCallback },
          },
        },
      },
      responses: {
        200: { ...acknowledged, content: { 'text/xml': { schema: z.literal('<Response/>') } } },
        ...refusals,
      },
    });
    docs.registerPath({
      method: 'get',
      path: `/callbacks/cxml${suffix}`,
      operationId: `receiveCxmlCallbackByGet${idSuffix}`,
      tags: ['Callbacks (public listener)'],
      summary: 'A compatibility-API status callback sent with GET',
      servers: [PUBLIC_LISTENER],
      request: { ...params, headers: signatureHeaders, query: CxmlCallback },
      responses: {
        200: { ...acknowledged, content: { 'text/xml': { schema: z.literal('<Response/>') } } },
        ...refusals,
      },
    });
    docs.registerPath({
      method: 'post',
      path: `/callbacks/native${suffix}`,
      operationId: `receiveNativeCallback${idSuffix}`,
      tags: ['Callbacks (public listener)'],
      summary: 'A native messaging API status callback',
      servers: [PUBLIC_LISTENER],
      request: {
        ...params,
        headers: signatureHeaders,
        body: { required: true, content: { 'application/json': { schema: NativeCallback } } },
      },
      responses: { 200: acknowledged, ...refusals },
    });
  }
}
