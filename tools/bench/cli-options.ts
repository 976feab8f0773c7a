// Command-line flags of the benchmark.
import { FIO_JOBS } from './fio-jobs';
import { Matrix } from './target-types';

export interface BenchOptions {
  runtimeSec: number;
  rampSec: number;
  iperfSec: number;
  repeat: number;
  quick: boolean;
  matrices: Matrix[];
  /** Run the resync section (pair link cut / full sync / IOPS during resync). */
  resync: boolean;
  /** Target ids to run; undefined = all. */
  targetIds?: string[];
  /** fio job ids to run; undefined = all. */
  jobIds?: string[];
  outPath: string;
  jsonPath?: string;
  /** Parent directory for the run's temporary directory. */
  workParent?: string;
  keepWorkDir: boolean;
  /** Re-render --out (and goals) from an earlier --json file instead of measuring. */
  fromJsonPath?: string;
  help: boolean;
}

export const DEFAULT_RUNTIME_SEC = 10;
export const DEFAULT_RAMP_SEC = 2;
export const DEFAULT_IPERF_SEC = 5;
export const QUICK_RUNTIME_SEC = 2;
export const QUICK_RAMP_SEC = 1;
export const QUICK_IPERF_SEC = 2;

export const USAGE = `usage: node dist/tools/bench/bench.js [flags]
  --runtime SECONDS   measured seconds per fio job (default ${DEFAULT_RUNTIME_SEC}; ramp ${DEFAULT_RAMP_SEC} s before it)
  --ramp SECONDS      unmeasured warm-up per fio job (default ${DEFAULT_RAMP_SEC})
  --repeat N          measure every case N times (interleaved) and report the median run (default 1)
  --quick             smoke test: runtime ${QUICK_RUNTIME_SEC} s, ramp ${QUICK_RAMP_SEC} s, iperf3 ${QUICK_IPERF_SEC} s
  --only single|mirrored|resync   run one matrix only, or only the resync section (default: all three)
  --targets LIST      comma list of: blockmirror,nbdkit,qemu-nbd,blockmirror-pair,qemu-mirror
                      (the resync section runs when the list is absent or names blockmirror-pair)
  --jobs LIST         comma list of: ${FIO_JOBS.map((job) => job.id).join(',')}
  --out FILE          markdown report (default BENCHMARKS.md in the current directory)
  --json FILE         also write the raw results as JSON
  --work-dir DIR      where the temporary run directory is created (default: the OS temp dir)
  --from-json FILE    do not measure: re-render --out from an earlier run's --json (goals re-evaluated)
  --keep              keep the temporary run directory (store files, fio JSON, server logs)
  --help`;

// Reads a positive number flag value, rejecting junk early instead of benchmarking with NaN.
function positiveNumber(flag: string, value: string | undefined): number {
  const parsed = Number(value);
  if (value === undefined || !Number.isFinite(parsed) || parsed <= 0) throw new Error(`${flag} needs a positive number, got ${String(value)}`);
  return parsed;
}

// Reads a positive integer flag value.
function positiveInteger(flag: string, value: string | undefined): number {
  const parsed = positiveNumber(flag, value);
  if (!Number.isInteger(parsed)) throw new Error(`${flag} needs a whole number, got ${String(value)}`);
  return parsed;
}

// Splits a comma list flag value.
function list(flag: string, value: string | undefined): string[] {
  if (!value) throw new Error(`${flag} needs a comma-separated list`);
  return value.split(',').map((item) => item.trim()).filter((item) => item.length > 0);
}

// Parses argv (without node and script) into options; explicit --runtime/--ramp win over --quick.
export function parseOptions(argv: readonly string[]): BenchOptions {
  const options: BenchOptions = {
    runtimeSec: DEFAULT_RUNTIME_SEC,
    rampSec: DEFAULT_RAMP_SEC,
    iperfSec: DEFAULT_IPERF_SEC,
    repeat: 1,
    quick: false,
    matrices: ['single', 'mirrored'],
    resync: true,
    outPath: 'BENCHMARKS.md',
    keepWorkDir: false,
    help: false,
  };
  let explicitRuntime: number | undefined;
  let explicitRamp: number | undefined;
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index] as string;
    const value = (): string | undefined => argv[++index];
    switch (flag) {
      case '--runtime': explicitRuntime = positiveNumber(flag, value()); break;
      case '--ramp': explicitRamp = positiveNumber(flag, value()); break;
      case '--repeat': options.repeat = positiveInteger(flag, value()); break;
      case '--quick': options.quick = true; break;
      case '--only': {
        const section = value();
        if (section !== 'single' && section !== 'mirrored' && section !== 'resync') throw new Error('--only takes single, mirrored or resync');
        options.matrices = section === 'resync' ? [] : [section];
        options.resync = section === 'resync';
        break;
      }
      case '--targets': options.targetIds = list(flag, value()); break;
      case '--jobs': options.jobIds = list(flag, value()); break;
      case '--out': options.outPath = value() ?? fail('--out needs a path'); break;
      case '--json': options.jsonPath = value() ?? fail('--json needs a path'); break;
      case '--work-dir': options.workParent = value() ?? fail('--work-dir needs a path'); break;
      case '--from-json': options.fromJsonPath = value() ?? fail('--from-json needs a path'); break;
      case '--keep': options.keepWorkDir = true; break;
      case '--help': case '-h': options.help = true; break;
      default: throw new Error(`unknown flag ${flag}\n${USAGE}`);
    }
  }
  if (options.quick) {
    options.runtimeSec = QUICK_RUNTIME_SEC;
    options.rampSec = QUICK_RAMP_SEC;
    options.iperfSec = QUICK_IPERF_SEC;
  }
  if (options.targetIds && !options.targetIds.includes('blockmirror-pair')) options.resync = false;
  options.runtimeSec = explicitRuntime ?? options.runtimeSec;
  options.rampSec = explicitRamp ?? options.rampSec;
  return options;
}

// Throws from expression position (flag values that are missing).
function fail(message: string): never {
  throw new Error(message);
}
