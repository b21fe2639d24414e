/** The middle value (the upper one of an even count): how the benchmarks summarise rounds. */
export function median(values: readonly number[]): number {
  return [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
}
