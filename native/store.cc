#include "store.h"
#include "resync_channel.h"
#include "resync_sender.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "buffer_pool.h"
#include "errors.h"
#include "js_args.h"
#include "thread_signals.h"
#include "thread_name.h"

namespace blockmirror {

namespace {

// Source of zero bytes for the write-zeroes fallback (page-aligned for O_DIRECT; lives in .bss).
alignas(4096) uint8_t g_zeroes[kZeroChunkBytes];

bool IsUnsupported(int errnum) { return errnum == EOPNOTSUPP || errnum == ENOTTY || errnum == ENOSYS; }

}  // namespace

// ---- synchronous I/O ----

namespace {

constexpr size_t kDirectAlignBytes = 4096;
// Largest piece of an unaligned O_DIRECT request moved through the bounce buffer at a time.
constexpr size_t kBounceChunkBytes = 1 << 20;

bool IsPageAligned(const uint8_t* p) { return reinterpret_cast<uintptr_t>(p) % kDirectAlignBytes == 0; }

// This thread's page-aligned bounce buffer (kBounceChunkBytes), or null when memory ran out.
uint8_t* BounceBuffer() {
  struct Freer {
    void operator()(uint8_t* p) const { free(p); }
  };
  thread_local std::unique_ptr<uint8_t, Freer> buffer;
  if (!buffer) {
    void* p = nullptr;
    if (posix_memalign(&p, kDirectAlignBytes, kBounceChunkBytes) != 0) return nullptr;
    buffer.reset(static_cast<uint8_t*>(p));
  }
  return buffer.get();
}

}  // namespace

int StoreIo::Read(uint8_t* buf, size_t length, uint64_t offset) const {
  if (direct_ && !IsPageAligned(buf)) return ReadBounced(buf, length, offset);
  return ReadAt(buf, length, offset);
}

int StoreIo::Write(const uint8_t* buf, size_t length, uint64_t offset, bool fua) const {
  if (direct_ && !IsPageAligned(buf)) return WriteBounced(buf, length, offset, fua);
  return WriteAt(buf, length, offset, fua);
}

int StoreIo::ReadBounced(uint8_t* buf, size_t length, uint64_t offset) const {
  uint8_t* bounce = BounceBuffer();
  if (bounce == nullptr) return -ENOMEM;
  for (size_t done = 0; done < length;) {
    size_t piece = std::min(length - done, kBounceChunkBytes);
    int rc = ReadAt(bounce, piece, offset + done);
    if (rc != 0) return rc;
    memcpy(buf + done, bounce, piece);  // the one copy O_DIRECT forces on unaligned memory
    AddCopiedPayloadBytes(piece);
    done += piece;
  }
  return 0;
}

int StoreIo::WriteBounced(const uint8_t* buf, size_t length, uint64_t offset, bool fua) const {
  uint8_t* bounce = BounceBuffer();
  if (bounce == nullptr) return -ENOMEM;
  for (size_t done = 0; done < length;) {
    size_t piece = std::min(length - done, kBounceChunkBytes);
    memcpy(bounce, buf + done, piece);  // the one copy O_DIRECT forces on unaligned memory
    AddCopiedPayloadBytes(piece);
    int rc = WriteAt(bounce, piece, offset + done, fua);
    if (rc != 0) return rc;
    done += piece;
  }
  return 0;
}

int StoreIo::ReadAt(uint8_t* buf, size_t length, uint64_t offset) const {
  size_t done = 0;
  while (done < length) {
    ssize_t got = pread(fd_, buf + done, length - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (got == 0) {
      memset(buf + done, 0, length - done);  // past EOF reads as zeroes (filling, not a payload copy)
      return 0;
    }
    done += static_cast<size_t>(got);
  }
  return 0;
}

int StoreIo::WriteAt(const uint8_t* buf, size_t length, uint64_t offset, bool fua) const {
  bool dsyncPerWrite = fua;
  size_t done = 0;
  while (done < length) {
    ssize_t put;
    if (dsyncPerWrite) {
      struct iovec iov = {const_cast<uint8_t*>(buf + done), length - done};
      put = pwritev2(fd_, &iov, 1, static_cast<off_t>(offset + done), RWF_DSYNC);
      if (put < 0 && IsUnsupported(errno)) {
        dsyncPerWrite = false;  // old kernel: plain writes, then fdatasync below
        continue;
      }
    } else {
      put = pwrite(fd_, buf + done, length - done, static_cast<off_t>(offset + done));
    }
    if (put < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (put == 0) return -EIO;
    done += static_cast<size_t>(put);
  }
  if (fua && !dsyncPerWrite && fdatasync(fd_) != 0) return -errno;
  return 0;
}

int StoreIo::Trim(uint64_t offset, uint64_t length) const {
  if (length == 0) return 0;
  int rc;
  if (isBlockDevice_) {
    uint64_t range[2] = {offset, length};
    rc = ioctl(fd_, BLKDISCARD, range);
  } else {
    rc = fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                   static_cast<off_t>(length));
  }
  if (rc == 0) return 0;
  if (IsUnsupported(errno)) return 0;  // trim is advisory
  return -errno;
}

int StoreIo::DataExtents(uint64_t offset, uint64_t end, double* out, int capacity) const {
  if (capacity <= 0) return -1;
  if (end <= offset) return 0;
  if (isBlockDevice_) {  // every byte of a block device may hold data (as NextData says)
    out[0] = static_cast<double>(offset);
    out[1] = static_cast<double>(end);
    return 1;
  }
  std::vector<uint8_t> memory(sizeof(struct fiemap) + static_cast<size_t>(capacity) * sizeof(struct fiemap_extent));
  auto* map = reinterpret_cast<struct fiemap*>(memory.data());
  map->fm_start = offset;
  map->fm_length = end - offset;
  map->fm_flags = 0;  // no FIEMAP_FLAG_SYNC: dirty pages are reported as delayed extents, not written back
  map->fm_extent_count = static_cast<uint32_t>(capacity);
  if (ioctl(fd_, FS_IOC_FIEMAP, map) != 0) return IsUnsupported(errno) ? SeekDataExtents(offset, end, out, capacity) : -1;
  int count = 0;
  for (uint32_t i = 0; i < map->fm_mapped_extents && count < capacity; i++) {
    const struct fiemap_extent& extent = map->fm_extents[i];
    uint64_t start = std::max<uint64_t>(extent.fe_logical, offset);
    uint64_t stop = std::min<uint64_t>(extent.fe_logical + extent.fe_length, end);
    if (stop <= start) continue;
    out[2 * count] = static_cast<double>(start);
    out[2 * count + 1] = static_cast<double>(stop);
    count++;
  }
  return count;
}

// DataExtents where FIEMAP is not supported (tmpfs): SEEK_DATA / SEEK_HOLE pairs, two calls an extent.
int StoreIo::SeekDataExtents(uint64_t offset, uint64_t end, double* out, int capacity) const {
  int count = 0;
  uint64_t at = offset;
  while (at < end && count < capacity) {
    off_t data = lseek(fd_, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0) return errno == ENXIO ? count : -1;  // ENXIO: nothing but hole to the end of the file
    if (static_cast<uint64_t>(data) >= end) break;
    off_t hole = lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) return -1;
    uint64_t stop = std::min<uint64_t>(static_cast<uint64_t>(hole), end);
    out[2 * count] = static_cast<double>(data);
    out[2 * count + 1] = static_cast<double>(stop);
    count++;
    at = stop;
  }
  return count;
}

int StoreIo::Zero(uint64_t offset, uint64_t length) const {
  if (length == 0) return 0;
  if (isBlockDevice_) {
    uint64_t range[2] = {offset, length};
    if (ioctl(fd_, BLKZEROOUT, range) == 0) return 0;
    if (!IsUnsupported(errno)) return -errno;
    return WriteZeroes(offset, length);
  }
  if (fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(length)) == 0) {
    return 0;
  }
  if (!IsUnsupported(errno)) return -errno;
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(length)) == 0) {
    return 0;
  }
  if (!IsUnsupported(errno)) return -errno;
  return WriteZeroes(offset, length);
}

int StoreIo::WriteZeroes(uint64_t offset, uint64_t length) const {
  while (length > 0) {
    size_t chunk = length < kZeroChunkBytes ? static_cast<size_t>(length) : kZeroChunkBytes;
    int rc = Write(g_zeroes, chunk, offset, false);
    if (rc != 0) return rc;
    offset += chunk;
    length -= chunk;
  }
  return 0;
}

uint64_t StoreIo::NextData(uint64_t offset, uint64_t end) const {
  if (isBlockDevice_ || offset >= end) return offset;
  off_t found = lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (found >= 0) return static_cast<uint64_t>(found) < end ? static_cast<uint64_t>(found) : end;
  return errno == ENXIO ? end : offset;  // ENXIO: nothing but hole up to the end of the file
}

int StoreIo::Flush() const { return fdatasync(fd_) == 0 ? 0 : -errno; }

// ---- async worker pool ----

Store::~Store() { Close(); }

bool Store::Start(Napi::Env env, Napi::Function onComplete, int* errnum) {
  env_ = env;
  onComplete_ = Napi::Persistent(onComplete);
  // Idle stores do not hold the event loop open; Submit refs it while ops are outstanding.
  wakeup_ = JsWakeup::Create(
      env, "blockmirror.store", [this](napi_env e) { OnWake(e); }, false, shared_from_this());
  if (!wakeup_) {
    *errnum = ENOMEM;
    return false;
  }
  try {
    for (int i = 0; i < kStoreWorkerThreads; i++) workers_.emplace_back([this] { WorkerMain(); });
  } catch (const std::system_error& e) {
    *errnum = e.code().value();
    Close();
    return false;
  }
  return true;
}

bool Store::Submit(Napi::Env env, StoreOp op, uint32_t id, Napi::Value buf, uint8_t* data, uint64_t offset,
                   uint64_t length, bool fua) {
  if (closed_) {
    ThrowErrno(env, EBADF, "submit", "(store is closed)");
    return false;
  }
  napi_ref bufRef = nullptr;
  if (data != nullptr && napi_create_reference(env, buf, 1, &bufRef) != napi_ok) {
    ThrowErrno(env, ENOMEM, "submit", "(cannot reference the buffer)");
    return false;
  }
  if (outstanding_++ == 0) wakeup_->SetKeepAlive(env, true);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    uint64_t sequence = nextSequence_++;
    queue_.push_back(Op{sequence, op, id, data, offset, length, fua, bufRef});
    unfinished_.insert(sequence);
  }
  changed_.notify_all();
  return true;
}

void Store::WorkerMain() {
  NameThisThread("bm-store-io");
  BlockAsyncSignalsInThisThread();
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [this] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;  // stopping and drained
    Op op = queue_.front();
    queue_.pop_front();
    if (op.op == StoreOp::Flush) {
      // Everything submitted before this flush must have finished first (FIFO dequeue guarantees
      // those ops are already running on the other worker, so this wait ends).
      changed_.wait(lock, [&] { return *unfinished_.begin() == op.sequence; });
    }
    lock.unlock();
    int result = Execute(op);
    lock.lock();
    unfinished_.erase(op.sequence);
    completions_.push_back(Completion{op.id, result, op.bufRef});
    changed_.notify_all();
    wakeup_->Signal();
  }
}

int Store::Execute(const Op& op) {
  switch (op.op) {
    case StoreOp::Read: return io_.Read(op.data, static_cast<size_t>(op.length), op.offset);
    case StoreOp::Write: return io_.Write(op.data, static_cast<size_t>(op.length), op.offset, op.fua);
    case StoreOp::Flush: return io_.Flush();
    case StoreOp::Trim: return io_.Trim(op.offset, op.length);
    case StoreOp::Zero: return io_.Zero(op.offset, op.length);
  }
  return -EINVAL;
}

void Store::OnWake(napi_env rawEnv) {
  Napi::Env env(rawEnv);
  Napi::HandleScope scope(env);
  std::vector<Completion> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done.swap(completions_);
  }
  if (done.empty()) return;
  size_t count = done.size();
  Napi::Uint32Array ids = Napi::Uint32Array::New(env, count);
  Napi::Int32Array results = Napi::Int32Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    ids[i] = done[i].id;
    results[i] = done[i].result;
    if (done[i].bufRef != nullptr) napi_delete_reference(env, done[i].bufRef);
  }
  outstanding_ -= count;
  if (outstanding_ == 0) wakeup_->SetKeepAlive(env, false);
  if (!onComplete_.IsEmpty()) {
    CallbackScope scope(StateOf(env));
    onComplete_.Call({Napi::Number::New(env, static_cast<double>(count)), ids, results});
  }
}

void Store::Close() {
  if (closed_) return;
  closed_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  // Completions already signalled are still delivered before the wake-up finalizes.
  if (wakeup_) wakeup_->Release();
}

// ---- JS class ----

namespace {

bool IsOffset(Napi::Value v) { return IsIntegerInRange(v, 0, kJsSafeIntegerMax); }

class StoreWrap : public Napi::ObjectWrap<StoreWrap> {
 public:
  explicit StoreWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StoreWrap>(info) {
    // Only native code constructs these (it passes a token); JS `new` would leave core unset.
    if (info.Length() != 1 || !info[0].IsExternal()) ThrowArgError(info.Env(), "not constructible from JavaScript");
  }
  ~StoreWrap() override {
    if (core) core->Close();  // garbage-collected without close(): do not leak the fd
  }
  std::shared_ptr<Store> core;

  Napi::Value SizeBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env, "sizeBytes")) return env.Undefined();
    if (core->isBlockDevice()) {
      uint64_t bytes = 0;
      if (ioctl(core->fd(), BLKGETSIZE64, &bytes) != 0) {
        ThrowErrno(env, errno, "ioctl", "BLKGETSIZE64");
        return env.Undefined();
      }
      return Napi::Number::New(env, static_cast<double>(bytes));
    }
    struct stat st;
    if (fstat(core->fd(), &st) != 0) {
      ThrowErrno(env, errno, "fstat");
      return env.Undefined();
    }
    return Napi::Number::New(env, static_cast<double>(st.st_size));
  }

  Napi::Value IsBlockDevice(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), core->isBlockDevice());
  }

  Napi::Value Truncate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !IsOffset(info[0])) {
      ThrowArgError(env, "truncate(sizeBytes): non-negative integer expected");
      return env.Undefined();
    }
    if (!CheckOpen(env, "ftruncate")) return env.Undefined();
    if (ftruncate(core->fd(), static_cast<off_t>(info[0].As<Napi::Number>().Int64Value())) != 0) {
      ThrowErrno(env, errno, "ftruncate");
    }
    return env.Undefined();
  }

  Napi::Value ReadSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data = nullptr;
    size_t length = 0;
    if (info.Length() < 2 || !GetBytes(info[0], &data, &length) || !IsOffset(info[1])) {
      ThrowArgError(env, "readSync(buf, offsetBytes) expected");
      return env.Undefined();
    }
    if (core->closed()) return Napi::Number::New(env, -EBADF);
    return Napi::Number::New(env, core->io().Read(data, length, Offset(info[1])));
  }

  Napi::Value WriteSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data = nullptr;
    size_t length = 0;
    if (info.Length() < 2 || !GetBytes(info[0], &data, &length) || !IsOffset(info[1])) {
      ThrowArgError(env, "writeSync(buf, offsetBytes, fua) expected");
      return env.Undefined();
    }
    bool fua = info.Length() >= 3 && info[2].ToBoolean().Value();
    if (core->closed()) return Napi::Number::New(env, -EBADF);
    return Napi::Number::New(env, core->io().Write(data, length, Offset(info[1]), fua));
  }

  Napi::Value TrimSync(const Napi::CallbackInfo& info) { return RangeOp(info, "trimSync", StoreOp::Trim); }
  Napi::Value ZeroSync(const Napi::CallbackInfo& info) { return RangeOp(info, "zeroSync", StoreOp::Zero); }

  // nextData(offsetBytes, endBytes): see StoreIo::NextData; the caller holds back writes to the range.
  Napi::Value NextData(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !IsOffset(info[0]) || !IsOffset(info[1])) {
      ThrowArgError(env, "nextData(offsetBytes, endBytes) expected");
      return env.Undefined();
    }
    uint64_t offset = Offset(info[0]);
    if (core->closed()) return Napi::Number::New(env, static_cast<double>(offset));
    return Napi::Number::New(env, static_cast<double>(core->io().NextData(offset, Offset(info[1]))));
  }

  // dataExtents(offsetBytes, endBytes, out: Float64Array) -> count or -1; see StoreIo::DataExtents.
  Napi::Value DataExtents(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !IsOffset(info[0]) || !IsOffset(info[1]) || !info[2].IsTypedArray() ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      ThrowArgError(env, "dataExtents(offsetBytes, endBytes, out: Float64Array) expected");
      return env.Undefined();
    }
    if (core->closed()) return Napi::Number::New(env, -1);
    Napi::Float64Array out = info[2].As<Napi::Float64Array>();
    int capacity = static_cast<int>(std::min<size_t>(out.ElementLength() / 2, 4096));
    return Napi::Number::New(env, core->io().DataExtents(Offset(info[0]), Offset(info[1]), out.Data(), capacity));
  }

  Napi::Value FlushSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core->closed()) return Napi::Number::New(env, -EBADF);
    return Napi::Number::New(env, core->io().Flush());
  }

  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !IsIntegerInRange(info[0], 0, 4) || !IsIntegerInRange(info[1], 0, 4294967295.0) ||
        !IsOffset(info[3]) || !IsOffset(info[4])) {
      ThrowArgError(env, "submit(op, id, buf, offsetBytes, lengthBytes, fua) expected");
      return env.Undefined();
    }
    StoreOp op = static_cast<StoreOp>(info[0].As<Napi::Number>().Int32Value());
    uint64_t length = Offset(info[4]);
    uint8_t* data = nullptr;
    size_t bufLength = 0;
    if (op == StoreOp::Read || op == StoreOp::Write) {
      if (!GetBytes(info[2], &data, &bufLength) || length > bufLength) {
        ThrowArgError(env, "submit: read/write needs a Buffer of at least lengthBytes");
        return env.Undefined();
      }
      if (data == nullptr) data = EmptyTarget();  // zero-length Buffer: still a valid op
    }
    bool fua = info.Length() >= 6 && info[5].ToBoolean().Value();
    core->Submit(env, op, info[1].As<Napi::Number>().Uint32Value(), info[2], data, Offset(info[3]), length, fua);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    core->Close();
    return info.Env().Undefined();
  }

 private:
  static uint64_t Offset(Napi::Value v) { return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value()); }
  static uint8_t* EmptyTarget() {
    static uint8_t byte;
    return &byte;
  }

  bool CheckOpen(Napi::Env env, const char* syscall) {
    if (!core->closed()) return true;
    ThrowErrno(env, EBADF, syscall, "(store is closed)");
    return false;
  }

  Napi::Value RangeOp(const Napi::CallbackInfo& info, const char* name, StoreOp op) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !IsOffset(info[0]) || !IsOffset(info[1])) {
      ThrowArgError(env, std::string(name) + "(offsetBytes, lengthBytes) expected");
      return env.Undefined();
    }
    if (core->closed()) return Napi::Number::New(env, -EBADF);
    uint64_t offset = Offset(info[0]);
    uint64_t length = Offset(info[1]);
    int rc = op == StoreOp::Trim ? core->io().Trim(offset, length) : core->io().Zero(offset, length);
    return Napi::Number::New(env, rc);
  }

 public:
  Napi::Value OpenResyncSenderMethod(const Napi::CallbackInfo& info) {
    if (!CheckOpen(info.Env(), "openResyncSender")) return info.Env().Undefined();
    return OpenResyncSender(info, core);
  }

  Napi::Value ResyncReceiveMethod(const Napi::CallbackInfo& info) {
    if (!CheckOpen(info.Env(), "resyncReceive")) return info.Env().Undefined();
    return ResyncReceive(info, core);
  }
};

}  // namespace

void InitStoreClass(Napi::Env env, AddonState& state) {
  Napi::Function cls = StoreWrap::DefineClass(env, "NativeStore",
                                              {
                                                  StoreWrap::InstanceMethod("sizeBytes", &StoreWrap::SizeBytes),
                                                  StoreWrap::InstanceMethod("isBlockDevice", &StoreWrap::IsBlockDevice),
                                                  StoreWrap::InstanceMethod("truncate", &StoreWrap::Truncate),
                                                  StoreWrap::InstanceMethod("readSync", &StoreWrap::ReadSync),
                                                  StoreWrap::InstanceMethod("writeSync", &StoreWrap::WriteSync),
                                                  StoreWrap::InstanceMethod("trimSync", &StoreWrap::TrimSync),
                                                  StoreWrap::InstanceMethod("zeroSync", &StoreWrap::ZeroSync),
                                                  StoreWrap::InstanceMethod("flushSync", &StoreWrap::FlushSync),
                                                  StoreWrap::InstanceMethod("nextData", &StoreWrap::NextData),
                                                  StoreWrap::InstanceMethod("dataExtents", &StoreWrap::DataExtents),
                                                  StoreWrap::InstanceMethod("submit", &StoreWrap::Submit),
                                                  StoreWrap::InstanceMethod("openResyncSender", &StoreWrap::OpenResyncSenderMethod),
                                                  StoreWrap::InstanceMethod("resyncReceive", &StoreWrap::ResyncReceiveMethod),
                                                  StoreWrap::InstanceMethod("close", &StoreWrap::Close),
                                              });
  state.storeClass = Napi::Persistent(cls);
}

Napi::Value OpenStore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    ThrowArgError(env, "openStore(options, onComplete) expected");
    return env.Undefined();
  }
  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Value pathValue = options.Get("path");
  if (!pathValue.IsString()) {
    ThrowArgError(env, "openStore: options.path must be a string");
    return env.Undefined();
  }
  std::string path = pathValue.As<Napi::String>().Utf8Value();
  bool direct = options.Get("direct").ToBoolean().Value();
  bool readOnly = options.Get("readOnly").ToBoolean().Value();
  bool create = options.Get("create").ToBoolean().Value();
  int flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0) | (create ? O_CREAT : 0);
  // A writable block device is opened O_EXCL: the kernel refuses it while it is mounted or held
  // by another exclusive opener (a filesystem, md, another blockmirror).
  struct stat before;
  if (!readOnly && stat(path.c_str(), &before) == 0 && S_ISBLK(before.st_mode)) flags |= O_EXCL;
  int fd = open(path.c_str(), flags, 0600);
  if (fd < 0) {
    int errnum = errno;
    ThrowErrno(env, errnum, "open", errnum == EBUSY ? path + " (the block device is in use: mounted or held by another process)" : path);
    return env.Undefined();
  }
  // One writer per store: an advisory lock that another blockmirror process on the same file
  // (or device) finds taken; the kernel drops it when this process exits, however it exits.
  // A read-only open cannot corrupt anything and takes no lock.
  if (!readOnly && flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int errnum = errno;
    close(fd);
    ThrowErrno(env, errnum == EWOULDBLOCK ? EBUSY : errnum, "flock",
               path + (errnum == EWOULDBLOCK ? " (the store is in use by another blockmirror process)" : ""));
    return env.Undefined();
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int errnum = errno;
    close(fd);
    ThrowErrno(env, errnum, "fstat", path);
    return env.Undefined();
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    close(fd);
    ThrowErrno(env, EINVAL, "openStore", path + " (not a regular file or block device)");
    return env.Undefined();
  }
  AddonState& state = StateOf(env);
  auto core = std::make_shared<Store>(fd, S_ISBLK(st.st_mode), direct);
  int errnum = 0;
  if (!core->Start(env, info[1].As<Napi::Function>(), &errnum)) {
    ThrowErrno(env, errnum, "openStore", path);
    return env.Undefined();
  }
  state.registry->Add(core);
  Napi::Object object = state.storeClass.New({Napi::External<void>::New(env, nullptr)});
  StoreWrap::Unwrap(object)->core = core;
  object.DefineProperty(Napi::PropertyDescriptor::Value("fd", Napi::Number::New(env, fd), napi_enumerable));
  return object;
}

}  // namespace blockmirror
