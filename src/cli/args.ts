/** Command-line option parsing with exact errors for unknown, missing or malformed options. */

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type OptionKind = 'string' | 'boolean';

export interface OptionSpec {
  [name: string]: OptionKind;
}

export type ParsedOptions = Map<string, string | boolean>;

/** Parse `--name value` / `--name=value` / `--flag` according to `spec`; positional arguments are refused. */
export function parseOptions(args: string[], spec: OptionSpec): ParsedOptions {
  const parsed: ParsedOptions = new Map();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    const kind = spec[name];
    if (kind === undefined) {
      throw new UsageError(`unknown option --${name} (known: ${Object.keys(spec).map((n) => `--${n}`).join(' ')})`);
    }
    if (kind === 'boolean') {
      if (eq >= 0) throw new UsageError(`option --${name} takes no value`);
      parsed.set(name, true);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else value = args[++i];
    if (value === undefined || value === '') throw new UsageError(`option --${name} needs a value`);
    if (parsed.has(name)) throw new UsageError(`option --${name} given twice`);
    parsed.set(name, value);
  }
  return parsed;
}

export function requireString(options: ParsedOptions, name: string): string {
  const value = options.get(name);
  if (typeof value !== 'string') throw new UsageError(`option --${name} is required`);
  return value;
}

export function optionalString(options: ParsedOptions, name: string): string | undefined {
  const value = options.get(name);
  return typeof value === 'string' ? value : undefined;
}

export function flag(options: ParsedOptions, name: string): boolean {
  return options.get(name) === true;
}

/** Parse HOST:PORT (IPv6 as [addr]:port). */
export function parseHostPort(text: string, optionName: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (match === null) throw new UsageError(`--${optionName} must be HOST:PORT, got "${text}"`);
  const port = Number(match[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--${optionName}: invalid port in "${text}"`);
  return { host: (match[1] ?? match[2])!, port };
}
