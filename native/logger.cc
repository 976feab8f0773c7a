#include "logger.h"

#include <cstdio>

namespace blockmirror {

namespace {
const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "error";
}
}  // namespace

void Logger::Log(LogLevel level, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (wakeup_ && queued_.size() < kLogLinesQueuedMax) {
      queued_.push_back(Line{level, message});
      wakeup_->Signal();
      return;
    }
  }
  fprintf(stderr, "blockmirror native %s: %s\n", LevelName(level), message.c_str());
}

bool Logger::SetJsLogger(Napi::Env env, Napi::Function fn) {
  std::weak_ptr<Logger> weakSelf = shared_from_this();
  // The wake-up never holds the event loop open: logging is not work.
  std::shared_ptr<JsWakeup> wakeup = JsWakeup::Create(
      env, "blockmirror.log",
      [weakSelf](napi_env e) {
        if (auto self = weakSelf.lock()) self->DrainOnJsThread(e);
      },
      false, nullptr);
  if (!wakeup) return false;
  std::shared_ptr<JsWakeup> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    previous = std::move(wakeup_);
    wakeup_ = wakeup;
    if (!queued_.empty()) wakeup_->Signal();
  }
  if (previous) previous->Release();
  jsLogger_ = Napi::Persistent(fn);
  return true;
}

void Logger::Detach() {
  std::shared_ptr<JsWakeup> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    previous = std::move(wakeup_);
  }
  if (previous) previous->Release();
  jsLogger_.Reset();
}

void Logger::DrainOnJsThread(napi_env rawEnv) {
  Napi::Env env(rawEnv);
  std::deque<Line> lines;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    lines.swap(queued_);
  }
  for (const Line& line : lines) {
    if (jsLogger_.IsEmpty() || env.IsExceptionPending()) {
      fprintf(stderr, "blockmirror native %s: %s\n", LevelName(line.level), line.message.c_str());
      continue;
    }
    Napi::HandleScope scope(env);
    jsLogger_.Call({Napi::String::New(env, LevelName(line.level)), Napi::String::New(env, line.message)});
  }
}

}  // namespace blockmirror
