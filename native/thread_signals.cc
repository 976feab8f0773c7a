#include "thread_signals.h"

#include <pthread.h>
#include <signal.h>

#include <initializer_list>

namespace blockmirror {

void BlockAsyncSignalsInThisThread() {
  sigset_t blocked;
  sigfillset(&blocked);
  // Synchronous faults must still reach the default handlers (crash reports, not hangs).
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) sigdelset(&blocked, sig);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
}

}  // namespace blockmirror
