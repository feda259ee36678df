"""File system metadata <-> item fields: owners, times, modes, xattrs, device numbers."""

from __future__ import annotations

import contextlib
import errno
import grp
import io
import os
import pwd
import stat
import sys
from functools import lru_cache

from . import items as it


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def gid_of(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


_TYPES = {
    stat.S_IFREG: it.FILE,
    stat.S_IFDIR: it.DIR,
    stat.S_IFLNK: it.SYMLINK,
    stat.S_IFIFO: it.FIFO,
    stat.S_IFCHR: it.CHARDEV,
    stat.S_IFBLK: it.BLOCKDEV,
}


def item_type(mode: int) -> str | None:
    """The item type of a file mode; None for sockets and unknown types, which are not backed up."""
    return _TYPES.get(stat.S_IFMT(mode))


def stat_fields(st: os.stat_result, fields: dict | None = None) -> dict:
    """The item fields of ``st``, added to ``fields`` when given (the walk's item: no second dict per entry)."""
    if fields is None:
        fields = {}
    fields[it.MODE] = st.st_mode
    fields[it.UID] = st.st_uid
    fields[it.GID] = st.st_gid
    fields[it.MTIME] = st.st_mtime_ns
    fields[it.ATIME] = st.st_atime_ns
    fields[it.CTIME] = st.st_ctime_ns
    user = user_name(st.st_uid)
    if user is not None:
        fields[it.USER] = user
    group = group_name(st.st_gid)
    if group is not None:
        fields[it.GROUP] = group
    return fields


_NOATIME = getattr(os, "O_NOATIME", 0)


def open_source_file(path: bytes) -> io.FileIO:
    """Open a file to back it up, without moving its access time where the system allows (``O_NOATIME``:
    the file's owner or root).  Reading a file is no change to it: a backup that touched atimes would tell
    mail readers that new mail was read, and would itself see every file it read as changed metadata next
    time (the item stream written again though no file changed).  Anyone else's file is read as usual."""
    return io.FileIO(_open_without_atime(path, os.O_RDONLY | os.O_CLOEXEC), "rb")


def list_directory(path: bytes) -> list[bytes]:
    """The names in the directory ``path``, listed without moving its access time where the system allows
    (``O_NOATIME``, as ``open_source_file``): listed by path, each directory's atime moved once a day under
    relatime, its item changed with it, and so did every chunk of the item stream around it."""
    if not _NOATIME:
        return os.listdir(path)
    fd = _open_without_atime(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = os.listdir(fd)  # str names for a descriptor: encoded back as os.fsencode does
    finally:
        os.close(fd)
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return [name.encode(encoding, errors) for name in names]


def _open_without_atime(path: bytes, flags: int) -> int:
    """``os.open`` with ``O_NOATIME`` added where there is one; for anyone but the owner (EPERM) without it."""
    try:
        return os.open(path, flags | _NOATIME)
    except PermissionError as exc:
        if not _NOATIME or exc.errno != errno.EPERM:
            raise
        return os.open(path, flags)


def read_xattrs(target: bytes | int) -> dict[bytes, bytes]:
    """The extended attributes of ``target``: a path (a symlink's own ones, not its target's) or the
    descriptor of an open file (no path lookup: a reader that opened the file anyway)."""
    if not hasattr(os, "listxattr"):
        return {}
    follow = isinstance(target, int)  # Python refuses follow_symlinks=False with a descriptor; it is the file
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError:
        return {}
    result = {}
    for name in names:
        try:
            result[os.fsencode(name)] = os.getxattr(target, name, follow_symlinks=follow)
        except OSError:
            continue
    return result


@lru_cache(maxsize=1)
def _running_as_root() -> bool:
    return os.geteuid() == 0


def apply_metadata(path, item: dict, *, fd: int, numeric_ids: bool = False, warn=None) -> None:
    """Owner, mode, xattrs and times of a restored regular file or directory, through its descriptor ``fd``
    (times last: the others change ctime only).

    Only a descriptor is used: a path would be resolved again, through whatever its parents are by then,
    and a symlink swapped in would redirect chmod or utime outside the restore target.  ``path`` names the
    entry in warnings.
    """
    _owner(fd, item, numeric_ids, warn, path)
    for name, value in (item.get(it.XATTRS) or {}).items():
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            if warn:
                warn(path, f"cannot set xattr {os.fsdecode(name)}: {exc.strerror}")
    os.chmod(fd, stat.S_IMODE(item[it.MODE]))
    os.utime(fd, ns=(item.get(it.ATIME, item[it.MTIME]), item[it.MTIME]))

def _proc_path(fd: int, name: bytes = b"") -> bytes:
    """A path to what ``fd`` refers to (or to ``name`` inside the directory ``fd``) that resolves through the
    descriptor, not through the directories above it: calls that take no descriptor (xattrs of a symlink,
    chmod of an ``O_PATH`` descriptor) reach exactly the entry restore created, even if a parent was swapped."""
    return b"/proc/self/fd/%d" % fd + (b"/" + name if name else b"")


def apply_metadata_at(dir_fd: int, name: bytes, item: dict, *, numeric_ids: bool = False, warn=None) -> None:
    """Metadata of a symlink, fifo or device named ``name`` in the directory ``dir_fd``, never following a link.

    A regular file or a directory is finished through its own descriptor (``apply_metadata(fd=...)``).  These
    entries cannot be opened for writing without side effects (a fifo blocks, a device may act), so a symlink
    is changed through the directory descriptor with ``follow_symlinks=False``, and the others through an
    ``O_PATH`` descriptor of the entry, checked to be the type restore just made.
    """
    shown = name
    if item[it.TYPE] == it.SYMLINK:
        _owner(name, item, numeric_ids, warn, shown, dir_fd=dir_fd, follow_symlinks=False)
        for xname, value in (item.get(it.XATTRS) or {}).items():
            try:
                os.setxattr(_proc_path(dir_fd, name), xname, value, follow_symlinks=False)
            except OSError as exc:
                if warn:
                    warn(shown, f"cannot set xattr {os.fsdecode(xname)}: {exc.strerror}")
        with contextlib.suppress(NotImplementedError, OSError):
            times = (item.get(it.ATIME, item[it.MTIME]), item[it.MTIME])
            os.utime(name, ns=times, dir_fd=dir_fd, follow_symlinks=False)
        return
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if item_type(os.fstat(fd).st_mode) != item[it.TYPE]:
            raise FileExistsError(errno.EEXIST, "replaced while being restored", os.fsdecode(name))
        path = _proc_path(fd)
        _owner(path, item, numeric_ids, warn, shown)
        for xname, value in (item.get(it.XATTRS) or {}).items():
            try:
                os.setxattr(path, xname, value)
            except OSError as exc:
                if warn:
                    warn(shown, f"cannot set xattr {os.fsdecode(xname)}: {exc.strerror}")
        os.chmod(path, stat.S_IMODE(item[it.MODE]))
        os.utime(path, ns=(item.get(it.ATIME, item[it.MTIME]), item[it.MTIME]))
    finally:
        os.close(fd)


def _owner(where, item: dict, numeric_ids: bool, warn, shown, **kwargs) -> None:
    if not _running_as_root():
        return
    uid, gid = item.get(it.UID, -1), item.get(it.GID, -1)
    if not numeric_ids:
        uid = uid_of(item[it.USER]) if item.get(it.USER) and uid_of(item[it.USER]) is not None else uid
        gid = gid_of(item[it.GROUP]) if item.get(it.GROUP) and gid_of(item[it.GROUP]) is not None else gid
    try:
        os.chown(where, uid, gid, **kwargs)
    except OSError as exc:
        if warn:
            warn(shown, f"cannot set owner: {exc.strerror}")
