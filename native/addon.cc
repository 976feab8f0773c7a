// Module entry: per-environment state, teardown hook and the exports of NativeBinding (src/native.ts).
#include <fcntl.h>
#include <napi.h>

#include <string>

#include "addon_state.h"
#include "buffer_pool.h"
#include "crc32c.h"
#include "errors.h"
#include "js_args.h"
#include "nbd_connection.h"
#include "nbd_device.h"
#include "resync_channel.h"
#include "resync_runs.h"
#include "resync_sender.h"
#include "store.h"

namespace blockmirror {

void TeardownRegistry::Add(const std::shared_ptr<Stoppable>& item) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Prune dead entries so long-running processes do not accumulate them.
  std::vector<std::weak_ptr<Stoppable>> live;
  live.reserve(items_.size() + 1);
  for (auto& weak : items_) {
    if (!weak.expired()) live.push_back(std::move(weak));
  }
  live.push_back(item);
  items_.swap(live);
}

void TeardownRegistry::StopAll() {
  std::vector<std::weak_ptr<Stoppable>> items;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    items.swap(items_);
  }
  for (auto& weak : items) {
    if (auto item = weak.lock()) item->StopForTeardown();
  }
}

CallbackScope::~CallbackScope() {
  if (--state_.callbackDepth > 0) return;
  // A flush never calls JS, so nothing can be added to the list while it runs.
  std::vector<std::shared_ptr<DeferredFlush>> flushes;
  flushes.swap(state_.deferredFlushes);
  for (auto& item : flushes) item->FlushDeferred();
}

AddonState& StateOf(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

namespace {

// setLogger(fn): route native log lines to fn(level, message) on the JS thread.
Napi::Value SetLogger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    ThrowArgError(env, "setLogger(fn) expected");
    return env.Undefined();
  }
  if (!StateOf(env).logger->SetJsLogger(env, info[0].As<Napi::Function>())) {
    ThrowErrno(env, ENOMEM, "setLogger");
  }
  return env.Undefined();
}

// withHeldReplies(fn): run fn with NBD replies held back, then send them together (one sendmsg per
// connection instead of one per complete()): for completions that arrive outside a native
// callback, such as a peer's ACKs in a mirror.
Napi::Value WithHeldReplies(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    ThrowArgError(env, "withHeldReplies(fn) expected");
    return env.Undefined();
  }
  CallbackScope scope(StateOf(env));
  return info[0].As<Napi::Function>().Call({});
}

// duplicateFd(fd): a close-on-exec duplicate of an open fd, so that JS can rewrap an accepted
// socket (for example in a net.Socket that reads into caller-owned memory) and close the original.
Napi::Value DuplicateFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !IsFd(info[0])) {
    ThrowArgError(env, "duplicateFd(fd) expected");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    ThrowErrno(env, errno, "dup", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  return Napi::Number::New(env, copy);
}

// Environment teardown: stop every thread before the environment's handles disappear.
void OnEnvCleanup(AddonState* state) {
  state->registry->StopAll();
  state->logger->Detach();
}

// JS: crc32c(buf, seed = 0) -> unsigned 32-bit number.
Napi::Value Crc32cJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t length = 0;
  if (info.Length() < 1 || !GetBytes(info[0], &data, &length)) {
    ThrowArgError(env, "crc32c(buf, seed?): buf must be a Buffer or Uint8Array");
    return env.Undefined();
  }
  uint32_t seed = 0;
  if (info.Length() >= 2 && !info[1].IsUndefined()) {
    if (!IsIntegerInRange(info[1], 0, 4294967295.0)) {
      ThrowArgError(env, "crc32c(buf, seed?): seed must be an unsigned 32-bit integer");
      return env.Undefined();
    }
    seed = static_cast<uint32_t>(info[1].As<Napi::Number>().Int64Value());
  }
  return Napi::Number::New(env, Crc32c(data, length, seed));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* state = new AddonState();
  env.SetInstanceData<AddonState>(state);
  env.AddCleanupHook(OnEnvCleanup, state);
  InitConnectionClass(env, *state);
  InitStoreClass(env, *state);
  InitDeviceClass(env, *state);
  InitResyncSenderClass(env, *state);
  exports.Set("initPool", Napi::Function::New(env, InitPool, "initPool"));
  exports.Set("openConnection", Napi::Function::New(env, OpenConnection, "openConnection"));
  exports.Set("openStore", Napi::Function::New(env, OpenStore, "openStore"));
  exports.Set("shutdownSocket", Napi::Function::New(env, ShutdownSocket, "shutdownSocket"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("encodeResyncWriteHeads", Napi::Function::New(env, EncodeResyncWriteHeads, "encodeResyncWriteHeads"));
  exports.Set("attachNbdDevice", Napi::Function::New(env, AttachNbdDevice, "attachNbdDevice"));
  exports.Set("disconnectNbdDevice", Napi::Function::New(env, DisconnectNbdDevice, "disconnectNbdDevice"));
  exports.Set("crc32c", Napi::Function::New(env, Crc32cJs, "crc32c"));
  exports.Set("collectDataRuns", Napi::Function::New(env, CollectDataRunsJs, "collectDataRuns"));
  exports.Set("copiedPayloadBytes", Napi::Function::New(env, CopiedPayloadBytesJs, "copiedPayloadBytes"));
  exports.Set("setLogger", Napi::Function::New(env, SetLogger, "setLogger"));
  exports.Set("withHeldReplies", Napi::Function::New(env, WithHeldReplies, "withHeldReplies"));
  exports.Set("duplicateFd", Napi::Function::New(env, DuplicateFd, "duplicateFd"));
  return exports;
}

}  // namespace
}  // namespace blockmirror

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return blockmirror::Init(env, exports); }

NODE_API_MODULE(blockmirror, InitModule)
