import { isBusy, isUnauthorized, NoAnswerError } from './api-client';
import type { ApiClient } from './api-client';
import { byId, el } from './dom';
import type { Child } from './dom';
import { renderLookupMessage, renderMessage } from './panels/lookup';
import { retryDelayMs } from './schedule';
import {
  lookupGaveUpText,
  lookupNews,
  lookupRetryingText,
  messageFromHash,
  messageHash,
} from './view-model';
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
 *
 * The result is not a live region: it is drawn anew on every event of the message shown, and
 * a screen reader read the whole history out again each time. A short line in its own polite
 * region (#lookup-announce) says what a lookup found, and then only the events that are new.
 */
export function lookupPanel(api: ApiClient, onUnauthorized: () => void): LookupPanel {
  const form = byId<HTMLFormElement>('lookup-form');
  const input = byId<HTMLInputElement>('lookup-input');
  const result = byId('lookup-result');
  const announce = byId('lookup-announce');
  // The message the panel shows, if any, and the events of it the panel shows.
  let shown: string | undefined;
  let shownEvents: ReadonlySet<number> | undefined;
  /** A notice in place of a message, said to screen readers too. */
  const notice = (content: string | Child[]): void => {
    shown = undefined;
    renderLookupMessage(result, content);
    announce.textContent = result.textContent;
  };
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
            lookup.waiting = true;
            notice(lookupRetryingText(error.status, wait));
          }
          timer = setTimeout(() => void ask(tries + 1), wait);
          return;
        }
        current = undefined;
        // A reload that failed leaves the message as it was; its next event reloads it again.
        if (quiet) return;
        notice(
          isBusy(error)
            ? lookupGaveUpText(id, error.status, tries)
            : error instanceof TypeError
              ? 'The lookup failed: connection lost. Try again.'
              : error instanceof NoAnswerError
                ? `The lookup failed: ${error.message}. Try again.`
                : `The lookup failed: ${(error as Error).message}`,
        );
        return;
      }
      if (current !== lookup) return;
      current = undefined;
      if (!message) {
        // The id as typed or as a link gave it: set apart from the sentence, as text.
        notice(['No message with id ', el('code', {}, [id]), '.']);
        return;
      }
      renderMessage(result, message);
      const news = lookupNews(message, quiet && shown === id ? shownEvents : undefined);
      if (news) announce.textContent = news;
      shown = id;
      shownEvents = new Set((message.history ?? []).map((entry) => entry.seq));
      // A link to this view: #message=<id> opens it (after the token, in any tab).
      if (location.hash !== messageHash(id)) history.replaceState(null, '', messageHash(id));
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
    if (waiting) notice('Lookup cancelled.');
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
