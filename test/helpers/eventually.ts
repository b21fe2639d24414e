/**
 * Waits until `check` holds, polling. For conditions reached asynchronously (a replay
 * finishing, events queueing up) — not a timing assertion: the limit only turns a hang into
 * a readable failure.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  limitMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A promise the test releases when it chooses: holds a commit open. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}
