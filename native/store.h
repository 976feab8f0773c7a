// File or block-device backing store: synchronous I/O helpers and an async worker pool whose
// completions reach JS in batches.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "addon_state.h"
#include "js_wakeup.h"

namespace blockmirror {

// Worker threads per store: ops execute concurrently; callers order overlapping ops themselves.
constexpr int kStoreWorkerThreads = 2;
// Largest zero-fill write done in one pwrite when fallocate cannot zero a range.
constexpr size_t kZeroChunkBytes = 1 << 20;

enum class StoreOp : int { Read = 0, Write = 1, Flush = 2, Trim = 3, Zero = 4 };

// Synchronous operations on one fd; each returns 0 or -errno and runs on the calling thread.
class StoreIo {
 public:
  StoreIo(int fd, bool isBlockDevice, bool direct) : fd_(fd), isBlockDevice_(isBlockDevice), direct_(direct) {}
  // On an O_DIRECT store, a buffer that does not start on a page boundary goes through a
  // per-thread page-aligned bounce buffer (counted in copiedPayloadBytes): O_DIRECT refuses
  // unaligned memory, and payloads that arrived behind a message head are not aligned.
  int Read(uint8_t* buf, size_t length, uint64_t offset) const;
  int Write(const uint8_t* buf, size_t length, uint64_t offset, bool fua) const;
  int Trim(uint64_t offset, uint64_t length) const;
  int Zero(uint64_t offset, uint64_t length) const;
  int Flush() const;
  // Offset of the first byte at or after `offset` that may hold data (SEEK_DATA), `end` when only
  // a hole follows, and `offset` itself when the store cannot tell (block devices, no SEEK_DATA).
  uint64_t NextData(uint64_t offset, uint64_t end) const;
  // The extents of [offset, end) that may hold data, in order, as (start, end) pairs clipped to the
  // range, at most `capacity` of them, from one FS_IOC_FIEMAP (delayed-allocation and unwritten
  // extents count as data); from SEEK_DATA / SEEK_HOLE on filesystems without FIEMAP (tmpfs); the
  // whole range for a block device. Returns how many were written, or -1 when the store cannot tell.
  // A hint only: it may be stale the moment it returns.
  int DataExtents(uint64_t offset, uint64_t end, double* out, int capacity) const;

 private:
  int SeekDataExtents(uint64_t offset, uint64_t end, double* out, int capacity) const;
  int WriteZeroes(uint64_t offset, uint64_t length) const;
  int ReadAt(uint8_t* buf, size_t length, uint64_t offset) const;
  int WriteAt(const uint8_t* buf, size_t length, uint64_t offset, bool fua) const;
  int ReadBounced(uint8_t* buf, size_t length, uint64_t offset) const;
  int WriteBounced(const uint8_t* buf, size_t length, uint64_t offset, bool fua) const;
  int fd_;
  bool isBlockDevice_;
  bool direct_;
};

class Store : public Stoppable, public std::enable_shared_from_this<Store> {
 public:
  Store(int fd, bool isBlockDevice, bool direct) : fd_(fd), isBlockDevice_(isBlockDevice), io_(fd, isBlockDevice, direct) {}
  ~Store() override;

  bool Start(Napi::Env env, Napi::Function onComplete, int* errnum);
  int fd() const { return fd_; }
  bool isBlockDevice() const { return isBlockDevice_; }
  const StoreIo& io() const { return io_; }
  bool closed() const { return closed_; }
  // JS thread; false with a JS exception on failure.
  bool Submit(Napi::Env env, StoreOp op, uint32_t id, Napi::Value buf, uint8_t* data, uint64_t offset,
              uint64_t length, bool fua);
  void Close();
  void StopForTeardown() override { Close(); }

 private:
  struct Op {
    uint64_t sequence;
    StoreOp op;
    uint32_t id;
    uint8_t* data;
    uint64_t offset;
    uint64_t length;
    bool fua;
    napi_ref bufRef;  // released on the JS thread with the completion
  };
  struct Completion {
    uint32_t id;
    int32_t result;
    napi_ref bufRef;
  };

  void WorkerMain();
  int Execute(const Op& op);
  void OnWake(napi_env env);

  int fd_;
  bool isBlockDevice_;
  StoreIo io_;
  std::shared_ptr<JsWakeup> wakeup_;
  Napi::FunctionReference onComplete_;  // JS thread only
  napi_env env_ = nullptr;
  bool closed_ = false;        // JS thread
  size_t outstanding_ = 0;     // JS thread: submitted, completion not yet delivered
  std::vector<std::thread> workers_;

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  uint64_t nextSequence_ = 0;
  std::deque<Op> queue_;
  std::set<uint64_t> unfinished_;  // sequences queued or running (flush waits for lower ones)
  std::vector<Completion> completions_;
};

// JS: openStore(options, onComplete) -> NativeStore.
Napi::Value OpenStore(const Napi::CallbackInfo& info);
void InitStoreClass(Napi::Env env, AddonState& state);

}  // namespace blockmirror
