#pragma once

#include <pthread.h>

namespace blockmirror {

// Names the calling thread as `top -H`, `ps -L` and perf show it (the kernel keeps 15 characters).
// Every thread the addon starts calls this first, so a profile of a node says which thread is which.
inline void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace blockmirror
