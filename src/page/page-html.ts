import { createHash } from 'node:crypto';

/** The status page as served: one HTML document and the Content-Security-Policy it needs. */
export interface AssembledPage {
  html: string;
  csp: string;
}

/**
 * The status page's HTML, with its script and stylesheet inside it: one response holds the
 * whole page, so the HTML and the files it needs cannot come from different releases. (Behind a
 * load balancer, during a rolling update, a page from a new pod asking an old pod for the new
 * bundle got a 404 and stayed blank.) Landmarks, headings and labelled regions are in the
 * markup, so a screen reader has the page's structure before any data arrives; the script, at
 * the end of the body, fills the regions.
 *
 * The Content-Security-Policy still allows no inline code but these two: it names the script and
 * the stylesheet by their SHA-256, so an injected script or style would not run.
 */
export function assemblePage({
  script,
  stylesheet,
}: {
  script: string;
  stylesheet: string;
}): AssembledPage {
  // Text that would end the element early (`</script`, `</style`) or open an HTML comment
  // inside a script would change how the HTML parses; esbuild escapes it in string literals,
  // and this makes sure.
  if (/<\/script|<!--/i.test(script)) throw new Error('the page script cannot be inlined');
  if (/<\/style/i.test(stylesheet)) throw new Error('the page stylesheet cannot be inlined');
  return {
    html: pageHtml({ script, stylesheet }),
    csp: pageCsp({ scriptHash: sha256(script), styleHash: sha256(stylesheet) }),
  };
}

/**
 * The page's own Content-Security-Policy, stricter than the service's default (helmet's): only
 * its own script and stylesheet (by hash), no plugins, not framed, and API calls to this
 * origin only. No `upgrade-insecure-requests`: the internal listener is plain HTTP inside the
 * cluster, and upgrading its requests would break the page there.
 */
function pageCsp({ scriptHash, styleHash }: { scriptHash: string; styleHash: string }): string {
  return [
    "default-src 'none'",
    `script-src 'sha256-${scriptHash}'`,
    `style-src 'sha256-${styleHash}'`,
    // The favicon is an empty data: URL (no request, no 404 in the console).
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** A CSP hash source: base64 of the SHA-256 of the element's text, as the browser hashes it. */
function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64');
}

function pageHtml({ script, stylesheet }: { script: string; stylesheet: string }): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>sw-status — delivery</title>
    <link rel="icon" href="data:," />
    <style>${stylesheet}</style>
  </head>
  <body>
    <a class="skip-link" href="#main">Skip to content</a>
    <header class="top">
      <h1>sw-status <span class="subtitle">message delivery</span></h1>
      <p id="live-state" class="live-state" role="status" aria-live="polite">Loading…</p>
      <p id="updated" class="updated" hidden></p>
      <button id="change-token" type="button" hidden>Change token</button>
    </header>
    <main id="main" tabindex="-1">
      <section id="token-panel" class="panel token-panel" aria-labelledby="token-title" hidden>
        <h2 id="token-title">API token</h2>
        <form id="token-form">
          <p>Enter one of the service's <code>API_TOKENS</code>. It is kept for this tab only.</p>
          <label for="token-input">API token</label>
          <input id="token-input" name="token" type="password" autocomplete="off" required />
          <button type="submit">Open the status page</button>
          <p id="token-error" class="error" role="alert"></p>
        </form>
      </section>

      <div id="dashboard" class="dashboard" hidden>
        <section class="panel overview" aria-labelledby="overview-title">
          <h2 id="overview-title">Last 24 hours</h2>
          <dl id="overview" class="figures"></dl>
          <p id="announce" class="visually-hidden" aria-live="polite"></p>
        </section>

        <section class="panel" aria-labelledby="statuses-title">
          <h2 id="statuses-title">Messages by status</h2>
          <table id="statuses" class="data"></table>
        </section>

        <section class="panel" aria-labelledby="errors-title">
          <h2 id="errors-title">Error mix</h2>
          <table id="errors" class="data"></table>
        </section>

        <section class="panel wide" aria-labelledby="throughput-title">
          <h2 id="throughput-title">Throughput, last hour (per minute)</h2>
          <div id="throughput-chart" class="chart" role="img" aria-labelledby="throughput-title" aria-describedby="throughput-summary"></div>
          <p id="throughput-summary" class="chart-summary"></p>
        </section>

        <section class="panel wide" aria-labelledby="failures-title">
          <h2 id="failures-title">Recent failures</h2>
          <table id="failures" class="data"></table>
        </section>

        <section class="panel" aria-labelledby="stuck-title">
          <h2 id="stuck-title">Stuck messages</h2>
          <table id="stuck" class="data"></table>
        </section>

        <section class="panel" aria-labelledby="relays-title">
          <h2 id="relays-title">Dead relays</h2>
          <table id="relays" class="data"></table>
        </section>

        <section class="panel wide" id="lookup-panel" aria-labelledby="lookup-title">
          <h2 id="lookup-title">Message lookup</h2>
          <form id="lookup-form" class="lookup-form" role="search" aria-label="Message lookup">
            <label for="lookup-input">Message id (SID)</label>
            <input id="lookup-input" name="id" type="text" autocomplete="off" spellcheck="false" required maxlength="64" />
            <button type="submit">Look up</button>
          </form>
          <div id="lookup-result"></div>
          <p id="lookup-announce" class="visually-hidden" aria-live="polite"></p>
        </section>
      </div>
    </main>
    <script>${script}</script>
  </body>
</html>
`;
}
