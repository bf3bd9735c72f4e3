// Entry point of the helper program the runtime starts as `thaw __init
// SPEC` (SPEC: the container Spec as JSON), and the fds of a container's
// first process. Like `thaw __restore-shell` (restore_shell.h) it is exec'd
// fresh — single-threaded, holding only the fds it was given — which is why
// it is a program and not a function run after a fork of the multi-threaded
// runtime.
#pragma once

namespace thaw::container {

// Fd numbers a container's first process is started with.
constexpr int kControlFd = 3;  // the worker's end of the control channel
constexpr int kReportFd = 4;   // restores only: one JSON line about the restore

// pid 1 of a cold container (started in fresh pid, mount, uts and ipc
// namespaces): joins the cgroups, sets up mounts and hostname, starts the
// worker as pid 2 (fds 0-2 as given, the control channel as fd 3), forwards
// termination signals to it, reaps, and exits with the worker's status.
int init_main(int argc, char** argv);

}  // namespace thaw::container
