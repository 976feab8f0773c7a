/** Programmer-error checks (TigerStyle): a failed assertion is a bug, never a peer's or client's fault. */

export class AssertionFailed extends Error {
  override readonly name = 'AssertionFailed';
}

/** Crash loudly when an invariant does not hold. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailed(message);
}

/** Exhaustiveness check for switch statements over unions. */
export function unreachable(value: never): never {
  throw new AssertionFailed(`unreachable: ${String(value)}`);
}
