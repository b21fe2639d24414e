/**
 * The little DOM help the panels need. Text from the API (ids, error texts, numbers) only
 * ever becomes text nodes or attribute values, never markup: nothing here sets innerHTML.
 */

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

export type Child = Node | string | null;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  children: Child[] = [],
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) {
    if (child !== null) node.append(child);
  }
  return node;
}

/**
 * A value from a small fixed vocabulary (a status, an API) kept whole in a table cell. Cells
 * wrap anywhere (page.css) so that an unbounded value cannot widen a table; the table then
 * narrows short columns below their word too, and `undelivered` read as `undeliver` / `ed`.
 */
export function word(text: string): HTMLSpanElement {
  return el('span', { class: 'word' }, [text]);
}

/**
 * A phone number kept whole when it is one (E.164: at most 15 digits after the `+`); a longer
 * value (callbacks may bring 256 characters) wraps as any other.
 */
export function phoneNumber(text: string): HTMLSpanElement | string {
  return text.length <= 16 ? word(text) : text;
}

/** Fills a <table> with a header row and body rows; `empty` says so when there are none. */
export function fillTable(
  table: HTMLTableElement,
  headers: string[],
  rows: Child[][],
  empty: string,
): void {
  const head = el('thead', {}, [
    el(
      'tr',
      {},
      headers.map((title) => el('th', { scope: 'col' }, [title])),
    ),
  ]);
  const body = el(
    'tbody',
    {},
    rows.length > 0
      ? rows.map((cells) =>
          el(
            'tr',
            {},
            cells.map((cell) => el('td', {}, [cell])),
          ),
        )
      : [el('tr', {}, [el('td', { colspan: String(headers.length), class: 'empty' }, [empty])])],
  );
  table.replaceChildren(head, body);
}

/** A button that opens a message in the lookup panel (keyboard-reachable, unlike a plain id). */
export function messageButton(id: string, open: (id: string) => void): HTMLButtonElement {
  const button = el('button', { type: 'button', class: 'link', 'aria-label': `Look up ${id}` }, [
    id,
  ]);
  button.addEventListener('click', () => open(id));
  return button;
}
