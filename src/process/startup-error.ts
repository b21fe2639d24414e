/**
 * A reason the process cannot start that a person can fix, said in one line with what to do:
 * another instance holds a directory, a port is taken. main.ts prints the message alone (no
 * stack trace) and exits 1, like a configuration error.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
