// A coalescing wake-up of the JS thread from any native thread (one napi threadsafe function).
#pragma once

#include <node_api.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

namespace blockmirror {

// Signal() from any thread makes onWake run once on the JS thread; signals that arrive while a
// wake-up is already queued are folded into it, so N native events cost at most one JS call.
// Lifetime: shared by its owner and the threadsafe function; Signal() after Release() or after the
// environment tore the function down is a harmless no-op.
class JsWakeup : public std::enable_shared_from_this<JsWakeup> {
 public:
  using WakeHandler = std::function<void(napi_env)>;

  // Create the threadsafe function. keepAlive: whether it holds the event loop open initially.
  // ownerKeepAlive is released on the JS thread once the function is finalized.
  static std::shared_ptr<JsWakeup> Create(napi_env env, const char* name, WakeHandler onWake,
                                          bool keepAlive, std::shared_ptr<void> ownerKeepAlive);

  // Any thread: ask for one onWake call.
  void Signal();
  // JS thread: hold (true) or stop holding (false) the event loop open.
  void SetKeepAlive(napi_env env, bool keepAlive);
  // JS thread: no more Signal()s will be delivered after the queued ones; finalizes asynchronously.
  void Release();

 private:
  JsWakeup() = default;
  static void CallJs(napi_env env, napi_value jsCallback, void* context, void* data);
  static void Finalize(napi_env env, void* data, void* hint);

  std::mutex mutex_;
  napi_threadsafe_function tsfn_ = nullptr;  // null once released or finalized
  std::atomic<bool> wakePending_{false};
  WakeHandler onWake_;
  std::shared_ptr<void> ownerKeepAlive_;
};

}  // namespace blockmirror
