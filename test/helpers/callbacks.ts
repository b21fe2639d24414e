import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { Express } from 'express';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { TEST_PROJECTS } from '../factories';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from './test-app';

/** Builders for signed callbacks, as SignalWire would send them. */

export function cxmlFields(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    MessageSid: randomUUID(),
    MessageStatus: 'delivered',
    AccountSid: TEST_PROJECTS.cxml,
    From: '+15551234567',
    To: '+15557654321',
    Body: 'Hello',
    NumMedia: '0',
    NumSegments: '1',
    ...overrides,
  };
}

export function nativeFields(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: randomUUID(),
    project_id: TEST_PROJECTS.native,
    status: 'delivered',
    to: '+15551234567',
    from: '+15559876543',
    body: 'Hello World!',
    number_of_segments: 1,
    timestamp: '2026-03-17T22:26:57Z',
    error_code: null,
    error_message: null,
    ...overrides,
  };
}

/** POSTs a form callback signed with scheme B for PUBLIC_BASE_URL + path. */
export function postCxml(
  app: Express,
  fields: Record<string, string>,
  { path = '/callbacks/cxml', key = TEST_SIGNING_KEY, header = 'X-SignalWire-Signature' } = {},
) {
  const body = new URLSearchParams(fields).toString();
  const signature = signFormParams(key, TEST_PUBLIC_BASE_URL + path, Object.entries(fields));
  return request(app)
    .post(path)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .set(header, signature)
    .send(body);
}

/** POSTs a JSON callback signed with scheme A for PUBLIC_BASE_URL + path. */
export function postNative(
  app: Express,
  fields: Record<string, unknown>,
  { path = '/callbacks/native', key = TEST_SIGNING_KEY } = {},
) {
  const body = JSON.stringify(fields);
  return request(app)
    .post(path)
    .set('Content-Type', 'application/json')
    .set('X-SignalWire-Signature', signJsonBody(key, TEST_PUBLIC_BASE_URL + path, body))
    .send(body);
}
