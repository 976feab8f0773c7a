#include "errors.h"

#include <cstring>

namespace blockmirror {

std::string ErrnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  if (name != nullptr) return name;
  return "E" + std::to_string(errnum);
}

std::string ErrnoText(int errnum) {
  const char* text = strerrordesc_np(errnum);
  if (text != nullptr) return text;
  return "Unknown error " + std::to_string(errnum);
}

Napi::Error MakeErrnoError(Napi::Env env, int errnum, const std::string& syscall, const std::string& detail) {
  std::string message = syscall;
  if (!detail.empty()) message += " " + detail;
  message += ": " + ErrnoText(errnum);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(errnum)));
  error.Set("errno", Napi::Number::New(env, errnum));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, int errnum, const std::string& syscall, const std::string& detail) {
  MakeErrnoError(env, errnum, syscall, detail).ThrowAsJavaScriptException();
}

void ThrowArgError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG"));
  error.ThrowAsJavaScriptException();
}

}  // namespace blockmirror
