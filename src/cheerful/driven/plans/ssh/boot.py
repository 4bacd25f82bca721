"""cheerful's bootstrap on an SSH host: sent as source text over the connection, not imported.

The caller starts it with ``python3 -c 'import sys;exec(sys.stdin.buffer.read(N))' TAG``
and writes these N bytes on standard input. It must run on any Python 3 (it is what tells
that a host's Python is too old), so it keeps to old syntax. It:

1. stops with ``old X.Y.Z`` when Python is older than 3.10;
2. answers ``warm`` when cheerful's code for TAG is in the host's cache, else ``cold``
   and reads a zip of it from standard input: a 16-digit size, then the bytes. The zip is
   unpacked into a temporary directory beside the cache entry and renamed into place, so a
   half-written entry is never seen; when several hosts share the directory (one home on
   NFS) and another won the race, its copy is used;
3. runs the agent, :mod:`cheerful.driven.plans.ssh.agent`, from the cache entry.

Every line it writes starts with ``cheerful-boot``, so whatever a login script prints
before it is skipped.
"""

# ruff: noqa: UP031, UP036  (this file must run on any Python 3, to say when one is too old)

import os
import sys

MARK = "cheerful-boot"


def say(*words):
    """Write one line for the caller, behind the mark."""
    os.write(1, (" ".join((MARK,) + words) + "\n").encode())


def read_exact(size):
    """Read exactly ``size`` bytes from standard input (exit if the caller went away)."""
    parts = []
    while size:
        part = os.read(0, min(size, 1 << 20))
        if not part:
            raise SystemExit("cheerful-boot: the caller went away")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def cache_root():
    """The host's directory of cheerful code, one entry per TAG."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cheerful", "code")


def install(target):
    """Read the zip of cheerful's code from standard input and unpack it at ``target``."""
    import io
    import shutil
    import tempfile
    import zipfile

    data = read_exact(int(read_exact(16).decode()))
    root = os.path.dirname(target)
    os.makedirs(root, exist_ok=True)
    temp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    try:
        zipfile.ZipFile(io.BytesIO(data)).extractall(temp)
        os.rename(temp, target)
    except OSError:
        if not os.path.isdir(target):  # not a lost race: a real failure
            raise
    finally:
        if os.path.isdir(temp):
            shutil.rmtree(temp, ignore_errors=True)


def main():
    """Check Python, make sure the code for TAG is cached, then run the agent."""
    tag = sys.argv[1]
    version = "%d.%d.%d" % tuple(sys.version_info[:3])
    if sys.version_info < (3, 10):
        say("old", version)
        return 3
    target = os.path.join(cache_root(), tag)
    if os.path.isdir(target):
        say("warm", version)
    else:
        say("cold", version)
        install(target)
    sys.path.insert(0, target)
    from cheerful.driven.plans.ssh.agent import main as agent_main

    return agent_main()


if __name__ == "__main__":
    sys.exit(main())
