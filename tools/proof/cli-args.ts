/**
 * Minimal `--name value` / `--flag` parsing for the proof tools, with binary size suffixes.
 */

/** A command-line mistake; the tools print it with their usage and exit with the usage code. */
export class UsageError extends Error {}

export type OptionKinds = Record<string, 'string' | 'flag'>;

/** Parsed options: string values, and `true` for flags that were given. */
export type ParsedArgs = Map<string, string | true>;

/** Parses argv against the allowed options; unknown or repeated options are usage errors. */
export function parseArgs(argv: readonly string[], kinds: OptionKinds): ParsedArgs {
  const parsed: ParsedArgs = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    const kind = kinds[name];
    if (kind === undefined) throw new UsageError(`unknown option --${name}`);
    if (parsed.has(name)) throw new UsageError(`--${name} given twice`);
    if (kind === 'flag') {
      if (eq > 0) throw new UsageError(`--${name} takes no value`);
      parsed.set(name, true);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    parsed.set(name, value);
  }
  return parsed;
}

/** A string option, or undefined. */
export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const value = args.get(name);
  return typeof value === 'string' ? value : undefined;
}

const SIZE_SUFFIXES: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** A byte count with an optional binary suffix (4096, 64K, 256M, 1G); must be a safe integer. */
export function sizeOption(args: ParsedArgs, name: string): number | undefined {
  const text = stringOption(args, name);
  if (text === undefined) return undefined;
  const match = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (match === null) throw new UsageError(`--${name} must be a byte count like 4096, 64K or 256M, got "${text}"`);
  const bytes = Number(match[1]) * SIZE_SUFFIXES[match[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`--${name} is too large`);
  return bytes;
}

/** A non-negative number (integer or not) such as a duration or a percentage. */
export function numberOption(args: ParsedArgs, name: string, limits: { min: number; max: number; integer: boolean }): number | undefined {
  const text = stringOption(args, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < limits.min || value > limits.max || (limits.integer && !Number.isInteger(value))) {
    throw new UsageError(`--${name} must be ${limits.integer ? 'an integer' : 'a number'} in [${limits.min}, ${limits.max}], got "${text}"`);
  }
  return value;
}
