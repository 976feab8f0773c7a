// Per-JS-environment state of the addon (napi instance data) and the teardown registry.
#pragma once

#include <napi.h>

#include <memory>
#include <mutex>
#include <vector>

#include "logger.h"

namespace blockmirror {

class BufferPool;

// Anything owning native threads or kernel state that must stop when its environment goes away.
class Stoppable {
 public:
  virtual ~Stoppable() = default;
  // JS thread, environment teardown: stop threads and release kernel resources; must be idempotent.
  virtual void StopForTeardown() = 0;
};

// Something holding output that it sends in one go when the outermost native-to-JS callback returns.
class DeferredFlush {
 public:
  virtual ~DeferredFlush() = default;
  // JS thread, after the outermost CallbackScope closed: send what was held back.
  virtual void FlushDeferred() = 0;
};

// Weak list of live Stoppables of one environment.
class TeardownRegistry {
 public:
  void Add(const std::shared_ptr<Stoppable>& item);
  void StopAll();

 private:
  std::mutex mutex_;
  std::vector<std::weak_ptr<Stoppable>> items_;
};

struct AddonState {
  std::shared_ptr<Logger> logger = std::make_shared<Logger>();
  std::shared_ptr<TeardownRegistry> registry = std::make_shared<TeardownRegistry>();
  BufferPool* pool = nullptr;          // set when this environment called initPool
  Napi::ObjectReference poolInfo;      // the PoolInfo object returned by initPool
  Napi::FunctionReference connectionClass;
  Napi::FunctionReference storeClass;
  Napi::FunctionReference deviceClass;
  Napi::FunctionReference resyncSenderClass;
  // JS thread only: depth of open CallbackScopes, and what flushes when the outermost one closes.
  int callbackDepth = 0;
  std::vector<std::shared_ptr<DeferredFlush>> deferredFlushes;
};

// JS thread, RAII around native calls into JS that deliver events (request batches, store
// completions): replies completed during the call are coalesced and sent when the outermost scope
// ends, one send per connection instead of one per reply.
class CallbackScope {
 public:
  explicit CallbackScope(AddonState& state) : state_(state) { state_.callbackDepth++; }
  ~CallbackScope();
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

 private:
  AddonState& state_;
};

// The AddonState of env (created in module init).
AddonState& StateOf(Napi::Env env);

}  // namespace blockmirror
