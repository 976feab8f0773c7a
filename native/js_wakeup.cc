#include "js_wakeup.h"

namespace blockmirror {

std::shared_ptr<JsWakeup> JsWakeup::Create(napi_env env, const char* name, WakeHandler onWake,
                                           bool keepAlive, std::shared_ptr<void> ownerKeepAlive) {
  std::shared_ptr<JsWakeup> wakeup(new JsWakeup());
  wakeup->onWake_ = std::move(onWake);
  wakeup->ownerKeepAlive_ = std::move(ownerKeepAlive);
  napi_value resourceName;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resourceName) != napi_ok) return nullptr;
  // The finalize data is a heap copy of the shared_ptr so the wake-up outlives the function.
  auto* selfRef = new std::shared_ptr<JsWakeup>(wakeup);
  napi_status status = napi_create_threadsafe_function(env, nullptr, nullptr, resourceName, 0, 1, selfRef,
                                                       Finalize, wakeup.get(), CallJs, &wakeup->tsfn_);
  if (status != napi_ok) {
    delete selfRef;
    wakeup->ownerKeepAlive_.reset();
    return nullptr;
  }
  if (!keepAlive) napi_unref_threadsafe_function(env, wakeup->tsfn_);
  return wakeup;
}

void JsWakeup::Signal() {
  if (wakePending_.exchange(true)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (tsfn_ == nullptr) return;
  if (napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking) != napi_ok) wakePending_ = false;
}

void JsWakeup::SetKeepAlive(napi_env env, bool keepAlive) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (tsfn_ == nullptr) return;
  if (keepAlive) {
    napi_ref_threadsafe_function(env, tsfn_);
  } else {
    napi_unref_threadsafe_function(env, tsfn_);
  }
}

void JsWakeup::Release() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (tsfn_ == nullptr) return;
  napi_release_threadsafe_function(tsfn_, napi_tsfn_release);
  tsfn_ = nullptr;
}

void JsWakeup::CallJs(napi_env env, napi_value /*jsCallback*/, void* context, void* /*data*/) {
  auto* self = static_cast<JsWakeup*>(context);
  // Clear the flag before running the handler so events arriving during it schedule another call.
  self->wakePending_ = false;
  if (env == nullptr) return;  // the function is being torn down with calls still queued
  if (self->onWake_) self->onWake_(env);
}

void JsWakeup::Finalize(napi_env /*env*/, void* data, void* /*hint*/) {
  auto* selfRef = static_cast<std::shared_ptr<JsWakeup>*>(data);
  std::shared_ptr<JsWakeup> self = std::move(*selfRef);
  delete selfRef;
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->tsfn_ = nullptr;
  }
  // Dropping these may destroy the owner (on this, the JS thread), which is what we want.
  WakeHandler handler = std::move(self->onWake_);
  std::shared_ptr<void> owner = std::move(self->ownerKeepAlive_);
  handler = nullptr;
  owner.reset();
}

}  // namespace blockmirror
