import v8 from 'node:v8';

/** The V8 flag that turnOffPretenuring turns off; given on node's command line, it is left alone. */
export const PRETENURING_FLAG = '--allocation-site-pretenuring';
const noFlag = PRETENURING_FLAG.replace('--', '--no-');

/**
 * Turns off V8's allocation-site pretenuring for this process — unless node was started with
 * `--allocation-site-pretenuring` (or `--no-…`) on its command line: an explicit choice wins.
 * Returns whether it turned it off.
 *
 * Why: a callback's request and response objects live until its batch has committed, a few
 * milliseconds. While a server is cold (first commits slow, young generation still small)
 * they can outlive most scavenges, and V8 then decides that their allocation sites make
 * long-lived objects and allocates from them straight in old space. The decision sticks:
 * from then on every callback's ~14 kB lands in old space as garbage that only a full
 * collection frees, and the process grows by 100 MB and more between full collections.
 * Measured (`npm run bench:heap-growth`, fresh servers at 3 400 callbacks/s): with
 * pretenuring on, 4 of 8 grew by 40 MB in 5 s (and `npm run bench` saw 280 MB), nearly all of
 * it request and response objects (a sampling heap profile); off, 0 of 8 grew, all at
 * 151–172 MB. Objects that do live long still reach old space the ordinary way, after
 * surviving two scavenges.
 *
 * The flag is set at run time (v8.setFlagsFromString) so that every way of starting the
 * service gets it — `npm start`, the image's `node dist/main.js`, the benchmarks. V8 reads it
 * at each scavenge, when it would otherwise process the sites' feedback.
 */
export function turnOffPretenuring(execArgv: readonly string[] = process.execArgv): boolean {
  const explicit = execArgv.some((arg) => arg === PRETENURING_FLAG || arg === noFlag);
  if (explicit) return false;
  v8.setFlagsFromString(noFlag);
  return true;
}
