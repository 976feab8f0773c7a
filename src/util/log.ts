/** One-line structured log output on stderr: "<iso time> <level> <component>: message". */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

let minimumLevel: LogLevel = (process.env.BLOCKMIRROR_LOG_LEVEL as LogLevel | undefined) ?? 'info';

/** Change the lowest level that is printed (e.g. from --verbose). */
export function setLogLevel(level: LogLevel): void {
  minimumLevel = level;
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A logger that prefixes every line with its component name. */
export function createLogger(component: string): Logger {
  const write = (level: LogLevel, message: string): void => {
    if (LEVEL_RANK[level] < LEVEL_RANK[minimumLevel]) return;
    process.stderr.write(`${new Date().toISOString()} ${level} ${component}: ${message}\n`);
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
  };
}
