// What the benchmark needs from a device under test, single node or mirrored.
import { CleanupRegistry } from './cleanup-registry';
import { NamespacePair } from './namespace-pair';

export type Matrix = 'single' | 'mirrored';

export interface TargetContext {
  /** Fresh directory for this (target, job): store files, sockets, logs. */
  caseDir: string;
  sizeBytes: number;
  cleanup: CleanupRegistry;
  /** Present for the mirrored matrix. */
  namespaces?: NamespacePair;
}

export interface RunningTarget {
  /** libnbd URI fio connects to. */
  uri: string;
  /** Throws if the target is no longer in the state being measured (e.g. the mirror job died). */
  checkStillValid(): Promise<void>;
  stop(): Promise<void>;
  /** For blockmirror pairs: a one-line summary of what the measured writes cost the secondary (read before stop). */
  describeSecondaryCost?(): Promise<string>;
  /** For mirrored targets: primary and replica files that must be identical after stop. */
  replicaFiles?: readonly [string, string];
}

/** Where an availability probe may start a throwaway instance. */
export interface ProbeContext {
  dir: string;
  sizeBytes: number;
  cleanup: CleanupRegistry;
}

export interface BenchTarget {
  id: string;
  matrix: Matrix;
  title: string;
  isBlockmirror: boolean;
  /** The settings chosen for this target and why, printed in the report. */
  settings: string;
  /** Undefined when usable, otherwise the reason it cannot be benchmarked on this machine. */
  unavailableReason(probe: ProbeContext): Promise<string | undefined>;
  start(context: TargetContext): Promise<RunningTarget>;
}
