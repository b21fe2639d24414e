import pino from 'pino';
import { z } from 'zod';
import { LOG_LEVELS, SIMULATOR_SIGNING_KEY, envValue, millisOrZero, port } from '../config';
import { SCENARIO_TABLE } from './scenarios';
import { startSimulator } from './simulator';

/**
 * `npm run simulator`: the fake SignalWire space on its own port, for local use and demos.
 * Its settings are simulator-only, so they are read here rather than in the service's config,
 * but by its rules (src/config.ts): numbers are plain decimals (a blank port is no random
 * one), a wait at most Node's longest timer, white space around a value dropped.
 */
const Env = z.object({
  SIMULATOR_PORT: port.default(8090),
  SIMULATOR_HOST: z.string().min(1).default('127.0.0.1'),
  SIMULATOR_SIGNING_KEY: z.string().min(1).default(SIMULATOR_SIGNING_KEY),
  SIMULATOR_STEP_DELAY_MS: millisOrZero.optional(),
  // Both set → only that project/token pair authenticates; otherwise any Basic pair does.
  SIMULATOR_PROJECT_ID: z.string().min(1).optional(),
  SIMULATOR_API_TOKEN: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
});

async function main(): Promise<void> {
  const present = Object.fromEntries(
    Object.keys(Env.shape).map((name) => [name, envValue(process.env, name)]),
  );
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
