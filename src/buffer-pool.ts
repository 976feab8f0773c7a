/** The process's one native buffer pool, allocated at start; slots are Buffers viewing native memory. */
import { loadNative } from './native';
import { POOL_SLOT_BYTES, POOL_SLOT_COUNT } from './limits';

export class BufferPool {
  private constructor(
    readonly slotBytes: number,
    private readonly slots: Buffer[],
  ) {}

  /** Allocate (once per process) and wrap the pool. */
  static init(slotBytes = POOL_SLOT_BYTES, slotCount = POOL_SLOT_COUNT): BufferPool {
    const info = loadNative().initPool(slotBytes, slotCount);
    return new BufferPool(info.slotBytes, info.slots);
  }

  /** The Buffer of one slot (full slot length; callers take subarray(0, length)). */
  slot(index: number): Buffer {
    const buf = this.slots[index];
    if (buf === undefined) throw new Error(`pool slot ${index} out of range`);
    return buf;
  }

  get slotCount(): number {
    return this.slots.length;
  }
}
