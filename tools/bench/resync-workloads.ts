// The resync benchmark's fixed parameters and fio command lines (pure, so they can be unit tested).

const KIB = 1024;
const MIB = 1024 * KIB;

/** blockmirror's default region size: one bit of the out-of-sync bitmap. */
export const REGION_BYTES = 64 * KIB;
/** Both nodes notice a cut link after this long (the default 5 s would only slow the scenario down). */
export const RESYNC_KEEPALIVE_TIMEOUT_MS = 1500;
/** Share of the regions written while the link is down in the dirty-resync scenario. */
export const DIRTY_FRACTION = 0.1;
/** fio io_size for that: 102 MiB of 64 KiB blocks ≈ 10% of a 1 GiB volume's regions (fio's random map never repeats a block). */
export const DIRTY_WRITE_BYTES = 102 * MIB;
/** The out-of-sync figure while degraded must be this close to DIRTY_FRACTION of the volume for the scenario to count. */
export const DIRTY_FRACTION_TOLERANCE = 0.01;
/** Data written to the primary before the full sync: the rest of the volume stays holes. */
export const SPARSE_WRITE_BYTES = 64 * MIB;
/** The application job measured before and during a resync. */
export const APPLICATION_JOB_ID = 'randwrite-4k-qd32';
/** Measured seconds of that job (the issue asks for about 8 s); a shorter --runtime (e.g. --quick) wins. */
export const APPLICATION_RUNTIME_SEC_MAX = 8;
/** The rate-limited resync should last this many times the application job's ramp + runtime ... */
export const RESYNC_DURATION_FACTOR = 3;
/** ... and at least this long, so the whole measured window falls inside it. */
export const RESYNC_DURATION_MIN_SEC = 15;

// Common fio options: one nbd connection, whole device, incompressible non-repeating buffers.
function baseArgs(name: string, uri: string, volumeBytes: number): string[] {
  return [`--name=${name}`, '--ioengine=nbd', `--uri=${uri}`, '--numjobs=1', `--size=${volumeBytes}`, '--output-format=json'];
}

// Random 64 KiB writes of ioBytes in total, each to a different region (fio's random map), random non-zero data.
export function scatteredWriteArgs(name: string, uri: string, volumeBytes: number, ioBytes: number): string[] {
  return [...baseArgs(name, uri, volumeBytes), '--rw=randwrite', `--bs=${REGION_BYTES}`, `--io_size=${ioBytes}`, '--iodepth=16', '--refill_buffers'];
}

// The secondary's share of a resync replayed by fio alone: the same 64 KiB random writes, one synchronous pwrite at a
// time (as the secondary applies page-cache writes on its one thread), into a fresh sparse file. No network, no
// checksums: what the backing store accepts, the ceiling for any resync that lands on it.
export function secondaryDiskArgs(name: string, filePath: string, volumeBytes: number, ioBytes: number): string[] {
  return [`--name=${name}`, '--ioengine=psync', `--filename=${filePath}`, '--numjobs=1', `--size=${volumeBytes}`, '--output-format=json',
    '--rw=randwrite', `--bs=${REGION_BYTES}`, `--io_size=${ioBytes}`, '--refill_buffers'];
}

// True when the out-of-sync bytes seen while degraded are the dirty share asked for (so the scenario measures what it says).
export function dirtyShareAsExpected(outOfSyncBytes: number, volumeBytes: number): boolean {
  return Math.abs(outOfSyncBytes / volumeBytes - DIRTY_FRACTION) <= DIRTY_FRACTION_TOLERANCE;
}

// Whole MiB/s rate that makes a resync of dirtyBytes last long enough to cover the measured application job.
export function resyncRateFor(dirtyBytes: number, windowSec: number): number {
  const durationSec = Math.max(RESYNC_DURATION_MIN_SEC, RESYNC_DURATION_FACTOR * windowSec);
  return Math.max(MIB, Math.floor(dirtyBytes / durationSec / MIB) * MIB);
}

// Seconds between the resync engine's ISO start and finish stamps, or null if either is missing.
export function engineSeconds(startedAt: string | null | undefined, finishedAt: string | null | undefined): number | null {
  if (!startedAt || !finishedAt) return null;
  const seconds = (Date.parse(finishedAt) - Date.parse(startedAt)) / 1000;
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}
