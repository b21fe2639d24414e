import { spawn } from 'node:child_process';
import path from 'node:path';

const REPO_ROOT = path.resolve(__dirname, '../../..');

/**
 * Runs the operator's spool command (src/ingest/spool-cli.ts) as a process of its own;
 * `maxFileBytes` runs it under `prlimit` with that file-size limit (RLIMIT_FSIZE), as on a
 * nearly full disk: a write past it is cut short, then refused.
 */
export function runSpoolCommand(
  args: string[],
  env: Record<string, string> = {},
  {
    maxFileBytes,
    onStdout,
  }: {
    maxFileBytes?: number;
    /** Called with everything printed so far, at each new output. */
    onStdout?: (stdout: string) => void;
  } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const command = [process.execPath, '--import', 'tsx', 'src/ingest/spool-cli.ts', ...args];
  if (maxFileBytes !== undefined) command.unshift('prlimit', `--fsize=${maxFileBytes}`);
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      onStdout?.(stdout);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
