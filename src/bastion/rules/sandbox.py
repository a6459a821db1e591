"""Locking a rule worker down, in the worker, before it reads its first job.

What is enforced, in order (each step reports whether it took effect):

1. every module a rule may import is imported now (later, files cannot be opened);
2. resource limits: address space (BASTION_RULES_MEMORY_MB), no file writes, no core
   dumps, few file descriptors. CPU time per job is limited by the server, which sets
   RLIMIT_CPU on the worker before each job (the worker cannot raise it again);
3. a new, empty network namespace (needs root or CAP_SYS_ADMIN; skipped elsewhere);
4. as root: drop to uid/gid 65534 (nobody), no supplementary groups;
5. a seccomp filter (libseccomp through pyseccomp): opening files, sockets, process
   creation, exec, signals to other processes, namespace and limit changes, mounts,
   ptrace and kernel-module calls fail with EPERM.

The environment is empty of secrets: the server starts workers with a minimal env.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import resource
from typing import Any

from bastion.rules.policy import ALLOWED_MODULES

__all__ = ["lock_down", "DENIED_SYSCALLS"]

_EXTRA_PRELOADS = ("_strptime", "encodings.idna", "encodings.utf_8", "encodings.latin_1", "logging.handlers", "json.decoder", "json.encoder")

DENIED_SYSCALLS = (
    # files and sockets
    "open", "openat", "openat2", "creat", "open_by_handle_at", "name_to_handle_at",
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "mkdir", "mkdirat", "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
    "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
    "truncate", "mknod", "mknodat", "memfd_create", "inotify_init", "inotify_init1", "fanotify_init",
    # processes
    "fork", "vfork", "clone", "execve", "execveat", "ptrace", "kill", "tkill", "process_vm_readv",
    "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    # privileges, limits, namespaces
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setrlimit", "prlimit64",
    "unshare", "setns", "mount", "umount2", "chroot", "pivot_root", "personality",
    # the kernel and the machine
    "bpf", "perf_event_open", "init_module", "finit_module", "delete_module", "kexec_load", "reboot",
    "swapon", "swapoff", "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup", "acct",
    "quotactl", "sethostname", "setdomainname", "settimeofday", "clock_settime", "adjtimex", "syslog",
    "iopl", "ioperm",
)

CLONE_NEWNET = 0x40000000


def _preload() -> None:
    for name in sorted(ALLOWED_MODULES) + list(_EXTRA_PRELOADS):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _limits(memory_mb: int) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024, memory_mb * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    return {"memory_mb": memory_mb, "file_writes": False}


def _network_namespace() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(CLONE_NEWNET) == 0


def _drop_privileges() -> int:
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return os.getuid()


def _load_seccomp():
    """Imported while files can still be read (before privileges are dropped)."""
    try:
        import pyseccomp
    except (ImportError, OSError):  # libseccomp2 missing
        return None
    return pyseccomp


def _seccomp(pyseccomp) -> bool:
    if pyseccomp is None:
        return False
    syscall_filter = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            syscall_filter.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
        except (ValueError, RuntimeError, OSError):
            pass  # a syscall this architecture does not have
    try:
        syscall_filter.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")  # glibc then falls back to clone, denied
    except (ValueError, RuntimeError, OSError):
        pass
    syscall_filter.load()
    return True


def lock_down(*, memory_mb: int) -> dict[str, Any]:
    """Apply every protection this host allows; returns what is in force."""
    _preload()
    pyseccomp = _load_seccomp()
    report: dict[str, Any] = _limits(memory_mb)
    report["network_namespace"] = _network_namespace()
    report["uid"] = _drop_privileges()
    report["seccomp"] = _seccomp(pyseccomp)
    return report
