// Seizing a live process, running a system call inside it, and letting it go
// exactly as it was.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "proc/ptrace.h"

TEST(Ptrace, InjectedSyscallRunsInTargetAndTargetContinues) {
  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(from_child), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Blocks in read(): the seizure catches it inside a system call.
    char c;
    if (::read(to_child[0], &c, 1) != 1) ::_exit(2);
    ::_exit(::write(from_child[1], &c, 1) == 1 ? 0 : 3);
  }
  ::usleep(50 * 1000);
  {
    thaw::proc::Seizure s(child);
    s.set_gadget(thaw::proc::find_syscall_gadget(child));
    ASSERT_EQ(s.threads().size(), 1u);
    EXPECT_EQ(s.syscall(s.leader(), SYS_getpid), child);
    EXPECT_EQ(s.syscall(s.leader(), SYS_getppid), ::getpid());
  }  // released here, with its read() rewound
  ASSERT_EQ(::write(to_child[1], "z", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(from_child[0], &c, 1), 1);
  EXPECT_EQ(c, 'z');
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Ptrace, MissingProcessIsAClearError) {
  EXPECT_THROW(thaw::proc::Seizure s(999999), std::exception);
}
