// Entry points of the two helper programs the runtime starts as `thaw
// __init SPEC` and `thaw __restore SPEC` (SPEC: the container Spec as JSON).
// Both are exec'd fresh — single-threaded, holding only the fds they were
// given — which is why they are programs and not functions run after a fork
// of the multi-threaded runtime.
#pragma once

namespace thaw::container {

// Fd numbers both helpers are started with.
constexpr int kControlFd = 3;  // the worker's end of the control channel
constexpr int kReportFd = 4;   // __restore only: one JSON line about the restore

// pid 1 of a cold container (started in fresh pid, mount, uts and ipc
// namespaces): joins the cgroups, sets up mounts and hostname, starts the
// worker as pid 2 (fds 0-2 as given, the control channel as fd 3), forwards
// termination signals to it, reaps, and exits with the worker's status.
int init_main(int argc, char** argv);

// Restores a container from an engine image: the engine's init becomes pid
// 1 in fresh namespaces, runs the same mount setup, and the worker comes
// back with fds 0-3 given by us. Reports on fd 4, then waits for the
// container and exits with the worker's status.
int restore_main(int argc, char** argv);

}  // namespace thaw::container
