// The process-wide pool of page-aligned payload slots and dedicated large payload buffers.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace blockmirror {

// Alignment of every payload buffer (O_DIRECT needs page alignment).
constexpr size_t kPayloadAlignBytes = 4096;
// Upper bound of the whole pool (one Buffer view range must stay addressable from JS).
constexpr uint64_t kPoolBytesMax = 1ull << 32;

// Fixed slots carved out of one page-aligned allocation; a free list under a mutex, and waiting
// for a free slot (backpressure of the NBD readers).
class BufferPool {
 public:
  BufferPool(uint8_t* base, size_t slotBytes, size_t slotCount);

  size_t slotBytes() const { return slotBytes_; }
  size_t slotCount() const { return slotCount_; }
  uint8_t* base() const { return base_; }
  uint8_t* SlotData(int slot) const { return base_ + static_cast<size_t>(slot) * slotBytes_; }

  // Block until a slot is free or *stop is true; returns -1 when stopped.
  int Acquire(const std::atomic<bool>* stop);
  void Release(int slot);
  // Wake every Acquire() so it re-checks its stop flag.
  void WakeAll();
  size_t FreeCount();

 private:
  uint8_t* base_;
  size_t slotBytes_;
  size_t slotCount_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<int> free_;
};

// The pool of this process, or null before initPool (never freed: JS views point into it).
BufferPool* ProcessPool();

// A dedicated page-aligned buffer for one request longer than a slot; freed when both native (the
// request) and JS (the Buffer's finalizer) dropped it.
class LargeBuffer {
 public:
  static LargeBuffer* Allocate(size_t lengthBytes);  // null on ENOMEM; refcount 1 (native)
  uint8_t* data() const { return data_; }
  size_t length() const { return length_; }
  void Ref() { refs_.fetch_add(1); }
  void Unref();
  // JS thread: a Buffer viewing this memory; holds one reference until garbage-collected.
  Napi::Buffer<uint8_t> ToJsBuffer(Napi::Env env);

 private:
  LargeBuffer(uint8_t* data, size_t length) : data_(data), length_(length) {}
  uint8_t* data_;
  size_t length_;
  std::atomic<int> refs_{1};
};

// Where one request's payload lives: a pool slot, a large buffer, or nothing.
struct PayloadBuffer {
  BufferPool* pool = nullptr;
  int slot = -1;
  LargeBuffer* large = nullptr;

  uint8_t* data() const;
  bool empty() const { return slot < 0 && large == nullptr; }
  // Give the slot back / drop native's reference; leaves this empty.
  void Release();
};

// Process-wide count of payload bytes that native code memcpy'd.
void AddCopiedPayloadBytes(uint64_t bytes);
uint64_t CopiedPayloadBytes();

// JS: initPool(slotBytes, slotCount) -> PoolInfo.
Napi::Value InitPool(const Napi::CallbackInfo& info);
// JS: copiedPayloadBytes() -> number.
Napi::Value CopiedPayloadBytesJs(const Napi::CallbackInfo& info);

}  // namespace blockmirror
