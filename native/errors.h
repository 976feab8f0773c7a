// Errors thrown to JavaScript carry code (errno name), errno and syscall, like Node's own system errors.
#pragma once

#include <napi.h>
#include <string>

namespace blockmirror {

// Name of an errno value ("ENOENT"), or "E<number>" if libc does not know it.
std::string ErrnoName(int errnum);

// Build an Error whose message is "<syscall> <detail>: <strerror>" with code/errno/syscall set.
Napi::Error MakeErrnoError(Napi::Env env, int errnum, const std::string& syscall, const std::string& detail);

// Throw MakeErrnoError as a pending JavaScript exception (callers return right after).
void ThrowErrno(Napi::Env env, int errnum, const std::string& syscall, const std::string& detail = "");

// Throw a TypeError for a bad argument (programmer error); code is 'ERR_INVALID_ARG'.
void ThrowArgError(Napi::Env env, const std::string& message);

// "<strerror>" for errnum, thread-safe.
std::string ErrnoText(int errnum);

}  // namespace blockmirror
