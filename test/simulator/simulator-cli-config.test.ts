import { spawn } from 'node:child_process';
import path from 'node:path';

/**
 * `npm run simulator` reads its numbers by the service's rules (src/config.ts): plain decimals,
 * so a blank port is no random free port and `0x1F90` no 8080, and a wait no longer than
 * Node's longest timer. A typo stops it with a line naming the variable.
 */

const ROOT = path.resolve(__dirname, '../..');

function runSimulator(
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/simulator/simulator-cli.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', SIMULATOR_HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const stop = () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    };
    child.stdout.on('data', (chunk) => {
      output += String(chunk);
      // Listening: it accepted the values.
      if (output.includes('SignalWire simulator listening')) stop();
    });
    child.stderr.on('data', (chunk) => (output += String(chunk)));
    const timer = setTimeout(stop, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test.each([
  ['SIMULATOR_PORT', ' ', 'must be a whole number (digits only)'],
  ['SIMULATOR_PORT', '0x1F90', 'must be a whole number (digits only)'],
  ['SIMULATOR_PORT', '8e3', 'must be a whole number (digits only)'],
  ['SIMULATOR_PORT', '65536', ''],
  ['SIMULATOR_STEP_DELAY_MS', '1e3', 'must be a whole number (digits only)'],
  ['SIMULATOR_STEP_DELAY_MS', '99999999999', 'must be at most 2147483647'],
])(
  'When %s=%j, then the simulator does not start, and says so naming the variable',
  async (name, value, message) => {
    const { code, output } = await runSimulator({ SIMULATOR_PORT: '0', [name]: value });
    expect(code).toBe(1);
    expect(output).toContain(`- ${name}: ${message}`);
  },
  30_000,
);

test('When the values are plain decimals with stray spaces, then the simulator starts on the port named', async () => {
  const { output } = await runSimulator({
    SIMULATOR_PORT: ' 0 ',
    SIMULATOR_STEP_DELAY_MS: '0 ',
    LOG_LEVEL: 'info ',
  });
  expect(output).toContain('SignalWire simulator listening');
}, 30_000);
