#include "buffer_pool.h"

#include <cerrno>
#include <cstdlib>
#include <string>

#include "addon_state.h"
#include "errors.h"

namespace blockmirror {

namespace {
std::mutex g_poolCreateMutex;
std::atomic<BufferPool*> g_pool{nullptr};
std::atomic<uint64_t> g_copiedPayloadBytes{0};

bool IsPositiveInteger(const Napi::Value& v) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  return d >= 1 && d <= 9007199254740991.0 && d == static_cast<double>(static_cast<uint64_t>(d));
}
}  // namespace

BufferPool::BufferPool(uint8_t* base, size_t slotBytes, size_t slotCount)
    : base_(base), slotBytes_(slotBytes), slotCount_(slotCount) {
  free_.reserve(slotCount);
  // Hand out low slots first (LIFO free list keeps hot slots hot in cache).
  for (size_t i = slotCount; i > 0; i--) free_.push_back(static_cast<int>(i - 1));
}

int BufferPool::Acquire(const std::atomic<bool>* stop) {
  std::unique_lock<std::mutex> lock(mutex_);
  freed_.wait(lock, [&] { return !free_.empty() || (stop != nullptr && stop->load()); });
  if (free_.empty()) return -1;
  int slot = free_.back();
  free_.pop_back();
  return slot;
}

void BufferPool::Release(int slot) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(slot);
  }
  // Several readers (connections) may wait; each re-checks.
  freed_.notify_all();
}

void BufferPool::WakeAll() {
  { std::lock_guard<std::mutex> lock(mutex_); }
  freed_.notify_all();
}

size_t BufferPool::FreeCount() {
  std::lock_guard<std::mutex> lock(mutex_);
  return free_.size();
}

BufferPool* ProcessPool() { return g_pool.load(); }

LargeBuffer* LargeBuffer::Allocate(size_t lengthBytes) {
  void* mem = nullptr;
  size_t rounded = (lengthBytes + kPayloadAlignBytes - 1) / kPayloadAlignBytes * kPayloadAlignBytes;
  if (rounded == 0) rounded = kPayloadAlignBytes;
  if (posix_memalign(&mem, kPayloadAlignBytes, rounded) != 0) return nullptr;
  return new LargeBuffer(static_cast<uint8_t*>(mem), lengthBytes);
}

void LargeBuffer::Unref() {
  if (refs_.fetch_sub(1) == 1) {
    free(data_);
    delete this;
  }
}

Napi::Buffer<uint8_t> LargeBuffer::ToJsBuffer(Napi::Env env) {
  Ref();
  return Napi::Buffer<uint8_t>::New(env, data_, length_, [](Napi::Env, uint8_t*, LargeBuffer* self) { self->Unref(); },
                                    this);
}

uint8_t* PayloadBuffer::data() const {
  if (large != nullptr) return large->data();
  if (slot >= 0 && pool != nullptr) return pool->SlotData(slot);
  return nullptr;
}

void PayloadBuffer::Release() {
  if (large != nullptr) large->Unref();
  if (slot >= 0 && pool != nullptr) pool->Release(slot);
  large = nullptr;
  slot = -1;
}

void AddCopiedPayloadBytes(uint64_t bytes) { g_copiedPayloadBytes.fetch_add(bytes); }
uint64_t CopiedPayloadBytes() { return g_copiedPayloadBytes.load(); }

Napi::Value CopiedPayloadBytesJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(CopiedPayloadBytes()));
}

// initPool(slotBytes, slotCount): allocate once; repeated calls with the same sizes return the same object.
Napi::Value InitPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsPositiveInteger(info[0]) || !IsPositiveInteger(info[1])) {
    ThrowArgError(env, "initPool(slotBytes, slotCount): positive integers expected");
    return env.Undefined();
  }
  uint64_t slotBytes = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
  uint64_t slotCount = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
  if (slotBytes % kPayloadAlignBytes != 0) {
    ThrowArgError(env, "initPool: slotBytes must be a multiple of " + std::to_string(kPayloadAlignBytes));
    return env.Undefined();
  }
  if (slotCount > kPoolBytesMax / slotBytes) {
    ThrowArgError(env, "initPool: pool larger than " + std::to_string(kPoolBytesMax) + " bytes");
    return env.Undefined();
  }
  AddonState& state = StateOf(env);
  std::lock_guard<std::mutex> lock(g_poolCreateMutex);
  BufferPool* existing = g_pool.load();
  if (existing != nullptr) {
    std::string sizes = std::to_string(existing->slotBytes()) + " x " + std::to_string(existing->slotCount());
    if (state.pool != existing) {
      ThrowErrno(env, EBUSY, "initPool", "(pool " + sizes + " belongs to another JS environment)");
      return env.Undefined();
    }
    if (existing->slotBytes() != slotBytes || existing->slotCount() != slotCount) {
      ThrowErrno(env, EEXIST, "initPool", "(pool already initialized as " + sizes + ")");
      return env.Undefined();
    }
    return state.poolInfo.Value();
  }
  size_t totalBytes = static_cast<size_t>(slotBytes * slotCount);
  void* mem = nullptr;
  int rc = posix_memalign(&mem, kPayloadAlignBytes, totalBytes);
  if (rc != 0) {
    ThrowErrno(env, rc, "posix_memalign", std::to_string(totalBytes) + " bytes");
    return env.Undefined();
  }
  auto* pool = new BufferPool(static_cast<uint8_t*>(mem), slotBytes, slotCount);
  // External ArrayBuffer without finalizer: the memory lives as long as the process.
  Napi::ArrayBuffer arrayBuffer = Napi::ArrayBuffer::New(env, mem, totalBytes);
  Napi::Function bufferFrom = env.Global().Get("Buffer").As<Napi::Object>().Get("from").As<Napi::Function>();
  Napi::Value bufferClass = env.Global().Get("Buffer");
  Napi::Array slots = Napi::Array::New(env, slotCount);
  for (uint64_t i = 0; i < slotCount; i++) {
    Napi::Value view = bufferFrom.Call(bufferClass, {arrayBuffer, Napi::Number::New(env, static_cast<double>(i * slotBytes)),
                                                     Napi::Number::New(env, static_cast<double>(slotBytes))});
    if (env.IsExceptionPending()) return env.Undefined();
    slots.Set(static_cast<uint32_t>(i), view);
  }
  Napi::Object poolInfo = Napi::Object::New(env);
  poolInfo.Set("slotBytes", Napi::Number::New(env, static_cast<double>(slotBytes)));
  poolInfo.Set("slotCount", Napi::Number::New(env, static_cast<double>(slotCount)));
  poolInfo.Set("slots", slots);
  poolInfo.Freeze();
  slots.Freeze();
  state.poolInfo = Napi::Persistent(poolInfo);
  state.pool = pool;
  g_pool.store(pool);
  return poolInfo;
}

}  // namespace blockmirror
