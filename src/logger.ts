import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/**
 * Secrets and message bodies must never reach the logs: credentials, signatures, callback
 * tokens (they authenticate callbacks) and SMS bodies (personal data) are censored wherever
 * they appear in a logged object.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-signalwire-signature"]',
  'req.headers["x-twilio-signature"]',
  'req.headers["x-signalwire-sha256-signature"]',
  'headers.authorization',
  'headers["x-signalwire-signature"]',
  'headers["x-twilio-signature"]',
  'headers["x-signalwire-sha256-signature"]',
  'authorization',
  'signature',
  'token',
  'secret',
  'body',
  'Body',
  '*.body',
  '*.Body',
  '*.token',
  '*.secret',
  '*.signature',
  '*.password',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'sw-status' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
