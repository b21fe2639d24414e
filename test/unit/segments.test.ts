import { countSegments, isGsm7 } from '../../src/signalwire/segments';

describe('countSegments', () => {
  it('When the body is empty, then it still counts as one GSM-7 segment', () => {
    expect(countSegments('')).toEqual({ encoding: 'GSM-7', units: 0, segments: 1 });
  });

  it('When a GSM-7 body has exactly 160 characters, then it is one segment', () => {
    expect(countSegments('a'.repeat(160))).toEqual({ encoding: 'GSM-7', units: 160, segments: 1 });
  });

  it('When a GSM-7 body has 161 characters, then it is split into 153-septet parts', () => {
    expect(countSegments('a'.repeat(161)).segments).toBe(2);
    expect(countSegments('a'.repeat(306)).segments).toBe(2);
    expect(countSegments('a'.repeat(307)).segments).toBe(3);
  });

  it('When the body uses GSM-7 extension characters, then each costs two septets', () => {
    const body = '€'.repeat(80); // 160 septets
    expect(countSegments(body)).toEqual({ encoding: 'GSM-7', units: 160, segments: 1 });
    expect(countSegments(`${body}^`)).toEqual({ encoding: 'GSM-7', units: 162, segments: 2 });
  });

  it('When an extension character would straddle a part boundary, then it moves to the next part', () => {
    // 152 plain + 1 extension (2) = 154 > 153: the escape pair starts part two.
    const body = `${'a'.repeat(152)}{${'a'.repeat(152)}`;
    expect(countSegments(body)).toEqual({ encoding: 'GSM-7', units: 306, segments: 3 });
  });

  it('When GSM-7 accented letters from the default alphabet are used, then the body stays GSM-7', () => {
    expect(isGsm7('Ça coûte 5€? é è ù ì ò Ä Ö Ñ Ü ß')).toBe(false); // û is not GSM-7
    expect(isGsm7('Ça coute 5€? é è ù ì ò Ä Ö Ñ Ü ß @£$¥')).toBe(true);
  });

  it('When one character is outside GSM-7, then the whole message is UCS-2 with 70/67 limits', () => {
    expect(countSegments(`${'a'.repeat(69)}ç`)).toEqual({
      encoding: 'UCS-2',
      units: 70,
      segments: 1,
    });
    expect(countSegments(`${'a'.repeat(70)}ç`)).toEqual({
      encoding: 'UCS-2',
      units: 71,
      segments: 2,
    });
    expect(countSegments('ж'.repeat(134)).segments).toBe(2);
    expect(countSegments('ж'.repeat(135)).segments).toBe(3);
  });

  it('When the body has emoji, then UCS-2 counts UTF-16 code units (two per emoji)', () => {
    expect(countSegments('😀'.repeat(35))).toEqual({ encoding: 'UCS-2', units: 70, segments: 1 });
    expect(countSegments('😀'.repeat(36))).toEqual({ encoding: 'UCS-2', units: 72, segments: 2 });
  });

  it('When a surrogate pair would straddle a part boundary, then it moves to the next part', () => {
    // 66 units + an emoji (2) = 68 > 67: the emoji starts part two; 66 + 2 + 66 + 2 = 136 → 3 parts.
    const body = `${'ж'.repeat(66)}😀${'ж'.repeat(66)}😀`;
    expect(countSegments(body)).toEqual({ encoding: 'UCS-2', units: 136, segments: 3 });
  });
});
