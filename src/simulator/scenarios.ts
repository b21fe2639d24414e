/**
 * Simulator scenarios: what happens to a message after the create call returned `queued`,
 * chosen by the last four digits of the destination number so any client (curl, the SDK, a
 * load test) can pick one without a side channel.
 *
 * | `To` ends in | scenario     | compatibility callbacks (MessageStatus)          | native callbacks (status)                                  |
 * |--------------|--------------|--------------------------------------------------|------------------------------------------------------------|
 * | any other    | delivered    | queued → sent → delivered                        | queued → initiated → sent → delivered                      |
 * | 0003         | undelivered  | queued → sent → undelivered, ErrorCode 30003     | queued → initiated → sent → undelivered, error_code `unreachable_destination_handset` |
 * | 0004         | failed       | queued → failed, ErrorCode 30008                 | queued → failed, error_code `unknown_error`                |
 * | 0005         | duplicates   | every callback of `delivered` sent twice          | every callback of `delivered` sent twice                   |
 * | 0006         | out-of-order | queued → delivered → sent                        | queued → initiated → delivered → sent                      |
 * | 0007         | no-receipt   | queued → sent (carrier never confirms)           | queued → initiated → sent                                  |
 * | 0008         | lost-callback| queued → sent; delivered, but that callback is never sent | queued → initiated → sent; delivered, callback never sent |
 * | 0009         | slow         | as delivered, the receipt 10 steps late          | as delivered, the receipt 10 steps late                    |
 *
 * An MMS (media present, or SendAsMms / send_as_mms) never gets a delivery receipt
 * (SIGNALWIRE.md): its `delivered` steps are dropped, so it stops at `sent`; failure scenarios
 * still fail it. Steps are `stepDelayMs` apart. In the lost-callback scenario the message does
 * reach `delivered` (the lookups of DESIGN §11 say so) but its last callback is never sent,
 * as when SignalWire gives up after three attempts: only reconciliation can find the truth.
 *
 * Native error codes are SignalWire's snake_case strings rather than 300xx numbers: no primary
 * source says which native callbacks carry, and the strings exercise the "codes are text, and
 * mean different things per API" rule on the receiving side.
 */

export type SimulatorApi = 'cxml' | 'native';

export type ScenarioName =
  | 'delivered'
  | 'undelivered'
  | 'failed'
  | 'duplicates'
  | 'out-of-order'
  | 'no-receipt'
  | 'lost-callback'
  | 'slow';

export interface ScenarioStep {
  /** The raw status as the API spells it (`initiated` exists only natively). */
  status: string;
  errorCode: string | null;
  errorMessage: string | null;
  /**
   * How many identical callbacks this step sends (2 for the duplicates scenario, 0 when the
   * callback is lost: the message still moves).
   */
  copies: number;
  /** Delay before this step, in units of the simulator's `stepDelayMs`. */
  delaySteps: number;
}

export interface ScenarioRow {
  /** Last four digits of `To` that select the scenario; null for the default. */
  suffix: string | null;
  scenario: ScenarioName;
  cxml: string;
  native: string;
}

/**
 * The table above as data (the simulator's start log, test/simulator/scenarios.test.ts).
 * README.md's table is a hand copy: change both.
 */
export const SCENARIO_TABLE: readonly ScenarioRow[] = [
  {
    suffix: null,
    scenario: 'delivered',
    cxml: 'queued → sent → delivered',
    native: 'queued → initiated → sent → delivered',
  },
  {
    suffix: '0003',
    scenario: 'undelivered',
    cxml: 'queued → sent → undelivered (ErrorCode 30003)',
    native: 'queued → initiated → sent → undelivered (error_code unreachable_destination_handset)',
  },
  {
    suffix: '0004',
    scenario: 'failed',
    cxml: 'queued → failed (ErrorCode 30008)',
    native: 'queued → failed (error_code unknown_error)',
  },
  {
    suffix: '0005',
    scenario: 'duplicates',
    cxml: 'every delivered-scenario callback sent twice',
    native: 'every delivered-scenario callback sent twice',
  },
  {
    suffix: '0006',
    scenario: 'out-of-order',
    cxml: 'queued → delivered → sent',
    native: 'queued → initiated → delivered → sent',
  },
  {
    suffix: '0007',
    scenario: 'no-receipt',
    cxml: 'queued → sent',
    native: 'queued → initiated → sent',
  },
  {
    suffix: '0008',
    scenario: 'lost-callback',
    cxml: 'queued → sent; reaches delivered, but that callback is never sent',
    native: 'queued → initiated → sent; reaches delivered, but that callback is never sent',
  },
  {
    suffix: '0009',
    scenario: 'slow',
    cxml: 'queued → sent → delivered (10 steps late)',
    native: 'queued → initiated → sent → delivered (10 steps late)',
  },
];

export function scenarioFor(to: string): ScenarioName {
  const row = SCENARIO_TABLE.find((r) => r.suffix !== null && to.endsWith(r.suffix));
  return row?.scenario ?? 'delivered';
}

const ERRORS = {
  cxml: {
    undelivered: { code: '30003', message: 'Unreachable destination handset' },
    failed: { code: '30008', message: 'Unknown error' },
  },
  native: {
    undelivered: {
      code: 'unreachable_destination_handset',
      message: 'Unreachable destination handset',
    },
    failed: { code: 'unknown_error', message: 'Unknown error' },
  },
} as const;

function step(status: string, delaySteps = 1): ScenarioStep {
  return { status, errorCode: null, errorMessage: null, copies: 1, delaySteps };
}

function errorStep(api: SimulatorApi, status: 'undelivered' | 'failed'): ScenarioStep {
  const error = ERRORS[api][status];
  return { ...step(status), errorCode: error.code, errorMessage: error.message };
}

/** The callbacks a message goes through, in sending order. */
export function scenarioSteps(
  scenario: ScenarioName,
  api: SimulatorApi,
  kind: 'sms' | 'mms',
): ScenarioStep[] {
  // The compatibility API goes queued → sent; the native one reports `initiated` in between.
  const toSent =
    api === 'native'
      ? [step('queued'), step('initiated'), step('sent')]
      : [step('queued'), step('sent')];
  let steps: ScenarioStep[];
  switch (scenario) {
    case 'delivered':
      steps = [...toSent, step('delivered')];
      break;
    case 'undelivered':
      steps = [...toSent, errorStep(api, 'undelivered')];
      break;
    case 'failed':
      steps = [step('queued'), errorStep(api, 'failed')];
      break;
    case 'duplicates':
      steps = [...toSent, step('delivered')].map((s) => ({ ...s, copies: 2 }));
      break;
    case 'out-of-order': {
      const sent = toSent[toSent.length - 1]!;
      steps = [...toSent.slice(0, -1), step('delivered'), sent];
      break;
    }
    case 'no-receipt':
      steps = toSent;
      break;
    case 'lost-callback':
      steps = [...toSent, { ...step('delivered'), copies: 0 }];
      break;
    case 'slow':
      steps = [...toSent, step('delivered', 10)];
      break;
  }
  return kind === 'mms' ? steps.filter((s) => s.status !== 'delivered') : steps;
}

// Progress order of the raw statuses, so a message's current status never moves backwards
// when the scenario sends its callbacks out of order.
const PROGRESS: Readonly<Record<string, number>> = {
  queued: 0,
  initiated: 1,
  sent: 2,
  delivered: 3,
  undelivered: 3,
  failed: 3,
};

export function isProgress(current: string, next: string): boolean {
  return (PROGRESS[next] ?? 0) > (PROGRESS[current] ?? 0);
}
