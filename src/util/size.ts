/** Parsing and printing byte sizes given on the command line ("256M", "1G", "4096"). */

const SUFFIX_SHIFT: Record<string, number> = { '': 0, K: 10, M: 20, G: 30, T: 40, P: 50 };

/** Parse a byte count with an optional binary suffix (K, M, G, T, P; optional trailing "iB" or "B"). */
export function parseSizeBytes(text: string): number {
  const match = /^\s*(\d+)\s*([KMGTP]?)(?:I?B)?\s*$/i.exec(text);
  if (match === null) {
    throw new Error(`invalid size "${text}": expected a whole number of bytes with an optional K, M, G, T or P suffix`);
  }
  const count = Number(match[1]);
  const shift = SUFFIX_SHIFT[(match[2] ?? '').toUpperCase()];
  if (shift === undefined) throw new Error(`invalid size suffix in "${text}"`);
  const bytes = count * 2 ** shift;
  if (!Number.isSafeInteger(bytes)) throw new Error(`size "${text}" is too large`);
  return bytes;
}

/** Human-readable size for log lines and status (exact when a whole number of units). */
export function formatSizeBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${text} ${units[unit]}`;
}
