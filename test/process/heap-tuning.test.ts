import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PRETENURING_FLAG, turnOffPretenuring } from '../../src/process/heap-tuning';

const REPO_ROOT = path.resolve(__dirname, '../..');

/**
 * A child node that, after `setup`, allocates objects that outlive a few scavenges (as
 * callbacks waiting for their commit do) with V8's pretenuring statistics traced. V8 prints
 * a `pretenuring:` line each time it processes the allocation sites' feedback, whatever it
 * decides; with pretenuring off it never does. The trace is switched on only after `setup`:
 * what ran before (tsx compiling on its loader thread, which has its own heap) is not this
 * test's business.
 */
function pretenuringTrace(setup: string, nodeFlags: string[] = []): string {
  const workload = `
    ${setup}
    require('node:v8').setFlagsFromString('--trace-pretenuring-statistics');
    let pending = [];
    for (let i = 0; i < 400000; i++) {
      pending.push({ id: i, headers: { a: 'x' + i }, chunks: [i, i * 2] });
      if (pending.length > 60000) pending = pending.slice(30000);
    }`;
  const child = spawnSync(
    process.execPath,
    // A young generation of 1 MB: a scavenge every megabyte whatever V8's own sizing (Node 24
    // starts larger than Node 20), so the feedback is processed many times during the loop.
    ['--import', 'tsx', '--max-semi-space-size=1', ...nodeFlags, '-e', workload],
    { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 },
  );
  // An unknown flag is not an error to V8, only a line on stderr: a renamed flag shows here.
  expect({ status: child.status, stderr: child.stderr }).toEqual({ status: 0, stderr: '' });
  return child.stdout;
}

const TURN_OFF = `require(${JSON.stringify(path.join(REPO_ROOT, 'src/process/heap-tuning.ts'))}).turnOffPretenuring();`;

describe('turnOffPretenuring', () => {
  it('stops V8 from making pretenuring decisions in this very process', () => {
    // The control: the same workload without it does make V8 process the sites' feedback.
    expect(pretenuringTrace('')).toMatch(/pretenuring:/);
    expect(pretenuringTrace(TURN_OFF)).not.toMatch(/pretenuring:/);
  });

  it('leaves an explicit choice on the command line alone', () => {
    expect(turnOffPretenuring([PRETENURING_FLAG])).toBe(false);
    expect(turnOffPretenuring(['--no-allocation-site-pretenuring'])).toBe(false);
    // Started with pretenuring asked for, the process keeps it.
    expect(pretenuringTrace(TURN_OFF, [PRETENURING_FLAG])).toMatch(/pretenuring:/);
  });
});
