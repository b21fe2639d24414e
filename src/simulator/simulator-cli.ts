import pino from 'pino';
import { z } from 'zod';
import { SIMULATOR_SIGNING_KEY } from '../config';
import { SCENARIO_TABLE } from './scenarios';
import { startSimulator } from './simulator';

/**
 * `npm run simulator`: the fake SignalWire space on its own port, for local use and demos.
 * Its settings are simulator-only, so they are read here rather than in the service's config.
 */
const Env = z.object({
  SIMULATOR_PORT: z.coerce.number().int().min(0).max(65535).default(8090),
  SIMULATOR_HOST: z.string().min(1).default('127.0.0.1'),
  SIMULATOR_SIGNING_KEY: z.string().min(1).default(SIMULATOR_SIGNING_KEY),
  SIMULATOR_STEP_DELAY_MS: z.coerce.number().int().min(0).optional(),
  // Both set → only that project/token pair authenticates; otherwise any Basic pair does.
  SIMULATOR_PROJECT_ID: z.string().min(1).optional(),
  SIMULATOR_API_TOKEN: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

async function main(): Promise<void> {
  const present = Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== ''));
  const parsed = Env.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  - ${String(i.path[0])}: ${i.message}`);
    console.error(`Invalid simulator configuration:\n${lines.join('\n')}`);
    process.exit(1);
  }
  const env = parsed.data;
  const logger = pino({ level: env.LOG_LEVEL, base: { service: 'sw-simulator' } });
  const credentials =
    env.SIMULATOR_PROJECT_ID && env.SIMULATOR_API_TOKEN
      ? { projectId: env.SIMULATOR_PROJECT_ID, token: env.SIMULATOR_API_TOKEN }
      : undefined;

  const sim = await startSimulator({
    port: env.SIMULATOR_PORT,
    host: env.SIMULATOR_HOST,
    signingKey: env.SIMULATOR_SIGNING_KEY,
    stepDelayMs: env.SIMULATOR_STEP_DELAY_MS,
    credentials,
    logger,
  });
  logger.info(
    {
      url: sim.url,
      credentials: credentials ? 'fixed project/token' : 'any Basic credentials',
      signingKey:
        env.SIMULATOR_SIGNING_KEY === SIMULATOR_SIGNING_KEY ? 'development default' : 'custom',
      scenarios: SCENARIO_TABLE.map((r) => `${r.suffix ?? 'default'}: ${r.scenario}`),
    },
    'SignalWire simulator listening',
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'simulator stopping');
    sim.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'simulator did not stop cleanly');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
