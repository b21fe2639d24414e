/**
 * The exit status of a command stopped by a signal, as a shell reports one it killed
 * (128 + the signal's number): 130 for SIGINT (Ctrl-C), 143 for SIGTERM (a deleted Job or pod).
 * The operator CLIs exit with it after stopping cleanly, so scripts can tell "stopped" from
 * "failed" (1) and "done" (0).
 */
export function signalExitCode(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : 143;
}
