import { isBusy, isUnauthorized } from './api-client';
import type { ApiClient } from './api-client';
import { byId } from './dom';
import { renderLookupMessage, renderMessage } from './panels/lookup';
import { retryDelayMs } from './schedule';
import { lookupGaveUpText, lookupRetryingText, messageFromHash, messageHash } from './view-model';
import type { Message } from './wire';

/**
 * How many times one lookup is asked while the service answers 503 or 429. Their Retry-After
 * (1–5 s) and the back-off make that about 5–20 s: longer, and the service is not briefly
 * busy; the reader is better told so than left waiting.
 */
export const LOOKUP_TRIES = 4;

export interface LookupPanel {
  /** Looks `id` up (a link in another panel, a #message=<id> link) and moves focus there. */
  show(id: string): void;
  /** The feed brought events of these messages: the one shown is reloaded. */
  onEvents(ids: string[]): void;
  /** Opens the message a #message=<id> link names, if it is not the one shown. */
  followLink(): void;
  /** Cancels the lookup under way (the page is signed out). */
  cancel(): void;
}

interface Lookup {
  /** A reload of the message shown: it stays shown while the service is busy. */
  quiet: boolean;
  /** The panel says that this lookup waits to be asked again. */
  waiting: boolean;
  cancel(): void;
}

/**
 * The lookup form. A lookup the service answers 503 or 429 is asked again after its
 * Retry-After, a few times; a new lookup or an emptied field cancels it. Any other answer
 * (404, 400, 500) is shown as it is: asking again would get the same.
 */
export function lookupPanel(api: ApiClient, onUnauthorized: () => void): LookupPanel {
  const form = byId<HTMLFormElement>('lookup-form');
  const input = byId<HTMLInputElement>('lookup-input');
  const result = byId('lookup-result');
  // The message the panel shows, if any.
  let shown: string | undefined;
  // The lookup under way: being asked, or waiting to be asked again.
  let current: Lookup | undefined;

  const cancel = (): void => {
    current?.cancel();
    current = undefined;
  };

  /** Resolves once the first answer is shown; asking again goes on after that. */
  const lookUp = (id: string, quiet = false): Promise<void> => {
    cancel();
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const lookup: Lookup = {
      quiet,
      waiting: false,
      cancel() {
        abort.abort();
        clearTimeout(timer);
      },
    };
    current = lookup;

    const ask = async (tries: number): Promise<void> => {
      let message: Message | null;
      try {
        message = await api.message(id, abort.signal);
      } catch (error) {
        // Cancelled meanwhile (its request aborted, or answered after another began).
        if (current !== lookup) return;
        if (isUnauthorized(error)) {
          current = undefined;
          onUnauthorized();
          return;
        }
        if (isBusy(error) && tries < LOOKUP_TRIES) {
          const wait = retryDelayMs(tries, error.retryAfterMs);
          if (!quiet) {
            shown = undefined;
            lookup.waiting = true;
            renderLookupMessage(result, lookupRetryingText(error.status, wait));
          }
          timer = setTimeout(() => void ask(tries + 1), wait);
          return;
        }
        current = undefined;
        // A reload that failed leaves the message as it was; its next event reloads it again.
        if (quiet) return;
        shown = undefined;
        renderLookupMessage(
          result,
          isBusy(error)
            ? lookupGaveUpText(id, error.status, tries)
            : error instanceof TypeError
              ? 'The lookup failed: connection lost. Try again.'
              : `The lookup failed: ${(error as Error).message}`,
        );
        return;
      }
      if (current !== lookup) return;
      current = undefined;
      if (message) renderMessage(result, message);
      else renderLookupMessage(result, `No message with id ${id}.`);
      shown = message ? id : undefined;
      // A link to this view: #message=<id> opens it (after the token, in any tab).
      if (message && location.hash !== messageHash(id))
        history.replaceState(null, '', messageHash(id));
    };
    return ask(1);
  };

  const show = (id: string): void => {
    input.value = id;
    byId('lookup-panel').scrollIntoView({ block: 'start' });
    void lookUp(id).then(() => result.focus());
  };

  form.onsubmit = (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id) void lookUp(id);
  };
  // Properties, not listeners: a page opened again with another token replaces them.
  input.oninput = () => {
    if (input.value.trim() !== '' || !current) return;
    const { waiting } = current;
    cancel();
    if (waiting) renderLookupMessage(result, 'Lookup cancelled.');
  };

  return {
    show,
    onEvents(ids) {
      // Not while the reader's own lookup is under way: the reload would cancel it.
      if (shown && ids.includes(shown) && !(current && !current.quiet)) void lookUp(shown, true);
    },
    followLink() {
      const id = messageFromHash(location.hash);
      if (id && id !== shown) show(id);
    },
    cancel,
  };
}
