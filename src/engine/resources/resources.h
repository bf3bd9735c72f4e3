// Each kind of process state has one file in this directory holding both its
// checkpoint side (dump_*: live process -> manifest) and its restore side
// (restore_*/plan_*: manifest -> new process). The sequences in
// checkpoint.cpp and restore.cpp call them in order.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/user.h>

#include "engine/context.h"

namespace thaw::engine {

// process.cpp: identity, cwd, umask, rlimits, creds, personality, mm fields.
void dump_process(CheckpointContext& c);
// The children of a held process that still run (a process tree's next
// level; exited ones are dump_process's); fails naming a child no image
// can hold.
std::vector<pid_t> running_children(pid_t pid, proc::Seizure& seizure);
void restore_process_early(RestoreContext& r);   // in the new process, before fds
// Whether the process gets a terminal as its stdin, stdout or stderr (the
// restoring side's, given for an external fd 0-2): it then keeps the
// restoring side's session and group (restore_session).
bool stdio_is_tty(const RestoreContext& r);
void restore_session(RestoreContext& r);         // in the new process, before it makes its children
void restore_fd_limit(RestoreContext& r);        // the open-files limit, once no fd is opened any more
void restore_zombies(RestoreContext& r);         // in the new process, first: its children that had exited
// clone3 with the given pid in the innermost pid namespace (a fork otherwise).
pid_t clone_with_pid(pid_t pid);
void plan_process(RestoreContext& r);            // mm fields, exe, creds for the restorer

// signals.cpp: actions and process-wide pending signals.
std::vector<image::SigInfo> peek_shared_signals(pid_t pid);  // threads.cpp
void dump_signals(CheckpointContext& c);
void restore_signals(RestoreContext& r);

// timers.cpp: interval and POSIX timers.
void dump_timers(CheckpointContext& c);
void restore_timers(RestoreContext& r);   // itimers now; POSIX timers into the plan
void restore_posix_timers(RestoreContext& r);

// threads.cpp: registers, FPU state, per-thread kernel state.
void dump_threads(CheckpointContext& c);
using proc::innermost_id;
// The pid and tids the restored process gets in its new pid namespace: the
// ids it had in its own namespace, when the image has them.
pid_t restore_pid(const image::Manifest& m);
pid_t restore_tid(const image::Manifest& m, const image::Thread& t);
void plan_threads(RestoreContext& r);
// Loads a parked thread's registers through ptrace (last restore step).
void load_thread_registers(pid_t tid, const image::Thread& t);
void check_cpu_compatible(const image::Manifest& m);
image::Cpu this_cpu();

// prctl.cpp: prctl settings, per process and per thread.
void dump_prctl(CheckpointContext& c);         // after dump_threads
void restore_prctl_early(RestoreContext& r);   // in the new process, before the restorer maps memory
void plan_prctl(RestoreContext& r);            // after plan_threads: the rest, set by the restorer
// For a template's copy (a fork) and its threads (clones of `creator`):
// what the fork or clone did not carry over. `process`: the copy's main
// thread, which also takes the process-wide settings a fork clears.
void set_prctl_injected(proc::Seizure& s, proc::Tracee& t, const image::Thread& th, const image::Thread& creator,
                        const image::Process* process);

// scheduling.cpp: per thread policy, nice, affinity, I/O priority; oom_score_adj.
void dump_scheduling(CheckpointContext& c);  // after dump_threads
// From outside, on the restored process's held threads (host tids).
void restore_scheduling(pid_t host_pid, const std::vector<std::pair<pid_t, const image::Thread*>>& threads,
                        const image::Manifest& m);

// memory.cpp: mappings and page data.
void dump_memory(CheckpointContext& c);
void plan_memory(RestoreContext& r);
// `pool`: the tree's shared descriptions (the root's Manifest::pool), which
// a child's "pooled" entries refer to; a single process's own.
void check_mapped_files(const image::Manifest& m, const nlohmann::json& pool);
inline void check_mapped_files(const image::Manifest& m) { check_mapped_files(m, m.pool); }
// SQLite's WAL files (sqlite_wal.cpp): whether `path` is the -wal or -shm
// file of a database the process holds open, which a restore finds by
// name; and making those that are gone again, before the files are checked.
// `pool` as for check_mapped_files: a child's database held through the
// tree's pool is the root's entry there.
bool sqlite_wal_file(const image::Manifest& m, const nlohmann::json& pool, const std::string& path);
void make_sqlite_wal_files(const image::Manifest& m, const nlohmann::json& pool);
// Refuses an image with more mappings than vm.max_map_count lets a restore make.
// `extra`: mappings the restore makes beside them (a tree's staging area).
void check_mapping_count(const image::Manifest& m, size_t extra = 0);
void check_mapping_count(size_t mappings, uint64_t max_map_count);
// Maps `size` bytes (anonymous, `prot`) at an address that is free here and
// in a hole of every layout given, clear of low memory; fails if none is.
uint64_t reserve_free_range(const std::vector<const image::Manifest*>& layouts, uint64_t size, int prot);

// shmem.cpp: shared memory objects (shared anonymous, memfd) and deleted
// files. Returns the Manifest::shmem index for the object behind `fd` (ours).
// `dir`: a deleted file's directory on disk (Shmem::dir).
int dump_shmem_object(CheckpointContext& c, int fd, bool memfd, const std::string& name,
                      const std::string& dir = "");
// A regular file of a disk filesystem deleted while the process holds it
// open or mapped (`link`: its name as /proc shows it, "... (deleted)"): its
// content, if it holds no more than kDeletedFileLimit (holes aside), as an object a restore makes anew
// without a name in the same directory (a memfd where it cannot).
constexpr uint64_t kDeletedFileLimit = uint64_t{256} << 20;
int dump_deleted_file(CheckpointContext& c, int fd, const std::string& link);
// A named file of a tmpfs whose content the image keeps (Shmem::path): any
// of /dev/shm up to kDeletedFileLimit, elsewhere a small one mapped shared
// (`mapped_shared`). Returns its Manifest::shmem index, -1 if not kept.
constexpr uint64_t kKeptSharedFileMax = 4096;
int keep_tmpfs_file(CheckpointContext& c, int fd, const std::string& path, bool mapped_shared);
// Makes the objects anew (Shmem::path ones only where gone, by name).
void restore_shmem_objects(RestoreContext& r);

// A file's modification time in nanoseconds, as images record it.
inline int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

// regular.cpp (files of a path): what differs between a file as recorded
// and as it is now, for "file changed since checkpoint (...)".
std::string file_changes(uint64_t size, uint64_t ino, int64_t was_mtime_ns, const struct stat& now);

// files.cpp: the fd table and every kind of open file.
// tree: the process, then its descendants (a process tree).
void dump_files(const std::vector<CheckpointContext*>& tree);
// Readies the fd table of a process that is to hold the image's fds (a
// restored process, or a template copy's namespace init making the copy's
// own files): raises RLIMIT_NOFILE to its hard limit, moves our fds in
// `keep` (updated in place) and the inherited ones (r.inherit, updated)
// above every fd of the image, closes everything else, and fills every
// number below with /dev/null, so that nothing restore_files opens lands on
// an image fd before that is installed. Returns the fillers.
std::vector<int> prepare_fd_table(RestoreContext& r, const std::vector<int*>& keep);
void restore_files(RestoreContext& r);
// In a tree's root, before it makes its children: opens Manifest::pool's
// descriptions (into r.pool_fds, parked), which the children inherit.
void open_pool(RestoreContext& r);
// After restore_files: closes our copies of the inherited fds and the
// fillers no image fd replaced.
void finish_fd_table(RestoreContext& r, const std::vector<int>& fillers);
void close_all_except(const std::vector<int>& keep);

// made_paths.cpp: what a restore made in the filesystem (a unix socket's
// file, or the directory it made again for one; a named file of /dev/shm
// made again). The restored process reports each on its status pipe as an
// "M" line (report_made, made_path_line; read by parse_made_path); a
// restore that fails removes them through init's root (remove_made_paths),
// each only while it is still the file that was made (device and inode),
// but for those of a process that failed by itself and removed its own
// (remove_own_made_paths).
struct MadePath {
  uint64_t dev = 0, ino = 0;
  std::string path;
};
void report_made(const RestoreContext& r, const std::string& path);
std::string made_path_line(const struct stat& st, const std::string& path);
bool parse_made_path(const std::string& line, MadePath* out);
void remove_made_paths(pid_t init, const std::vector<MadePath>& made);
// In a restored process that failed: removes what it reported (while its
// sockets are still bound), then says so on its status pipe ("C"), where
// thaw forgets them.
void remove_own_made_paths(int status_fd);

// locks.cpp: file locks. At checkpoint, from an fd's fdinfo: the locks of
// its description (flock, OFD; for its files entry) and those this process
// holds through it (POSIX; for its fds entry). Both fail, naming the lock,
// for leases and for locks on a file that is not `lockable` (reopened by
// path). At restore: a description's locks on the fd just opened for it;
// the process's POSIX locks, checked now and queued for the restorer (after
// restore_files and finish_fd_table, so that every fd is in place).
struct FdProbe;
nlohmann::json description_locks(const FdProbe& p, bool lockable);
nlohmann::json fd_posix_locks(const FdProbe& p, bool lockable);
void take_description_locks(int fd, const nlohmann::json& f);
void plan_posix_locks(RestoreContext& r);
// A lock of a files or fds entry, for F_SETLK (SEEK_SET; l_len 0: to EOF).
struct flock posix_lock_of(const nlohmann::json& lock);
// Drops the write locks from the image, keeping the read ones (a template's
// held process: its copies take them all).
void drop_write_locks(image::Manifest& m);
void check_files(const image::Manifest& m, const std::map<int, int>& inherit);
// `inherit` plus, for each fd of an external description that it does not
// name, the fd it gives another fd of that description (they were dups).
std::map<int, int> with_shared_inherits(const image::Manifest& m, const std::map<int, int>& inherit);

}  // namespace thaw::engine
