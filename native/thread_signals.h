// Keep asynchronous signals away from native threads.
#pragma once

namespace blockmirror {

// Block every asynchronous signal in the calling thread, so process-directed signals (SIGINT,
// SIGCHLD, SIGWINCH, ...) are delivered to Node's own threads. This matters most for the NBD_DO_IT
// thread: the kernel's nbd driver treats an interrupted DO_IT wait as a reason to shut the device's
// sockets down, so a signal landing there would tear the device down.
void BlockAsyncSignalsInThisThread();

}  // namespace blockmirror
