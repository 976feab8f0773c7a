/**
 * Preconditions of tests that need a system tool or root. Locally a missing tool skips the test
 * with the reason printed; under CI (CI=true) it fails, because .ci/run installs everything.
 */
import { spawnSync } from 'node:child_process';
import type { Context } from 'mocha';

/** True if `name` is on PATH. */
export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** Skip (locally) or fail (CI) unless every command exists. */
export function requireCommands(ctx: Context, ...names: string[]): void {
  const missing = names.filter((n) => !hasCommand(n));
  if (missing.length === 0) return;
  const reason = `missing tools: ${missing.join(', ')} (install them: see .ci/run)`;
  if (process.env.CI === 'true') throw new Error(reason);
  console.log(`      SKIPPED: ${reason}`);
  ctx.skip();
}

/** Skip (locally) or fail (CI) unless running as root. */
export function requireRoot(ctx: Context): void {
  if (process.getuid?.() === 0) return;
  const reason = 'needs root (loop devices, mounts, network namespaces)';
  if (process.env.CI === 'true') throw new Error(reason);
  console.log(`      SKIPPED: ${reason}`);
  ctx.skip();
}
