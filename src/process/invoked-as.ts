import path from 'node:path';

/**
 * How this process was started, as a person typed it: `npm start`, `npm run migrate`, or the
 * script's path (`node dist/main.js`). Shown to another process refused a directory this one
 * holds. npm sets npm_lifecycle_event for the scripts it runs; that is a fact about the
 * process, not configuration (config.ts reads the service's variables).
 */
export function invokedAs(): string {
  const script = process.env.npm_lifecycle_event;
  if (script === 'start' || script === 'test') return `npm ${script}`;
  if (script) return `npm run ${script}`;
  const entry = process.argv[1];
  return entry ? `node ${path.relative(process.cwd(), entry) || entry}` : 'node';
}
