// The item with the median value (the lower middle one of an even count): both the matrix's repetitions and the
// link-cut resync's runs report the run it picks, whole, rather than an average of runs that never happened.
export function medianBy<T>(items: readonly T[], value: (item: T) => number): T {
  if (items.length === 0) throw new RangeError('medianBy: no items');
  const sorted = [...items].sort((left, right) => value(left) - value(right));
  return sorted[Math.floor((sorted.length - 1) / 2)] as T;
}
