// Native log lines, delivered to a JS function on the JS thread (setLogger) or to stderr.
#pragma once

#include <napi.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "js_wakeup.h"

namespace blockmirror {

enum class LogLevel { Info, Warn, Error };

// One per JS environment; any thread may Log(). Lines queue under a mutex and one wake-up of the
// JS thread drains them into the JS logger, so logging never blocks a native thread on JS.
class Logger : public std::enable_shared_from_this<Logger> {
 public:
  // Any thread.
  void Log(LogLevel level, const std::string& message);
  // JS thread: route lines to `fn` (replaces the previous logger).
  bool SetJsLogger(Napi::Env env, Napi::Function fn);
  // JS thread: stop delivering to JS (environment teardown); later lines go to stderr.
  void Detach();

 private:
  struct Line {
    LogLevel level;
    std::string message;
  };
  void DrainOnJsThread(napi_env env);

  std::mutex mutex_;
  std::deque<Line> queued_;
  std::shared_ptr<JsWakeup> wakeup_;      // null: write to stderr
  Napi::FunctionReference jsLogger_;      // JS thread only
};

// Capped queue length: lines beyond it are written to stderr instead (a stalled JS thread must not
// let native logging grow without bound).
constexpr size_t kLogLinesQueuedMax = 10000;

}  // namespace blockmirror
