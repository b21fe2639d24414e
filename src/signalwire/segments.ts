/**
 * SMS segment estimate (SIGNALWIRE.md "Segments"). The provider's own NumSegments /
 * number_of_segments is the truth; this count is what the simulator reports and what the
 * service can show before a callback arrives.
 *
 * - GSM-7 (3GPP TS 23.038 default alphabet): 160 septets in a single message, 153 per part once
 *   split (the user data header takes 7). Extension-table characters are an escape plus the
 *   character, so they cost 2 septets and are never split across two parts.
 * - UCS-2: a single character outside GSM-7 switches the whole message. 70 UTF-16 code units in
 *   a single message, 67 per part; a surrogate pair (emoji…) is never split across two parts.
 */

export type SmsEncoding = 'GSM-7' | 'UCS-2';

export interface SegmentCount {
  encoding: SmsEncoding;
  /** Septets for GSM-7, UTF-16 code units for UCS-2. */
  units: number;
  segments: number;
}

export const GSM7_SINGLE_SEGMENT = 160;
export const GSM7_MULTI_SEGMENT = 153;
export const UCS2_SINGLE_SEGMENT = 70;
export const UCS2_MULTI_SEGMENT = 67;

// The default alphabet without ESC (0x1B), which only introduces the extension table.
const GSM7_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
    '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
const GSM7_EXTENSION = new Set('\f^{}\\[~]|€');

/** True when every character of the body can be sent in the GSM-7 alphabet. */
export function isGsm7(body: string): boolean {
  for (const ch of body) {
    if (!GSM7_BASIC.has(ch) && !GSM7_EXTENSION.has(ch)) return false;
  }
  return true;
}

/**
 * Number of parts when characters costing `costs[i]` units are packed greedily, a character
 * never straddling two parts. An empty body still occupies one segment: an MMS without text
 * and an empty SMS are both billed as one.
 */
function pack(costs: number[], single: number, multi: number): number {
  const total = costs.reduce((sum, cost) => sum + cost, 0);
  if (total <= single) return 1;
  let segments = 1;
  let used = 0;
  for (const cost of costs) {
    if (used + cost > multi) {
      segments += 1;
      used = 0;
    }
    used += cost;
  }
  return segments;
}

export function countSegments(body: string): SegmentCount {
  const chars = [...body]; // code points, so a surrogate pair stays one character
  if (isGsm7(body)) {
    const costs = chars.map((ch) => (GSM7_EXTENSION.has(ch) ? 2 : 1));
    return {
      encoding: 'GSM-7',
      units: costs.reduce((sum, cost) => sum + cost, 0),
      segments: pack(costs, GSM7_SINGLE_SEGMENT, GSM7_MULTI_SEGMENT),
    };
  }
  const costs = chars.map((ch) => ch.length);
  return {
    encoding: 'UCS-2',
    units: body.length,
    segments: pack(costs, UCS2_SINGLE_SEGMENT, UCS2_MULTI_SEGMENT),
  };
}
