"""File system metadata <-> item fields: owners, times, modes, xattrs, device numbers."""

from __future__ import annotations

import grp
import os
import pwd
import stat
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


def item_type(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return it.FILE
    if stat.S_ISDIR(mode):
        return it.DIR
    if stat.S_ISLNK(mode):
        return it.SYMLINK
    if stat.S_ISFIFO(mode):
        return it.FIFO
    if stat.S_ISCHR(mode):
        return it.CHARDEV
    if stat.S_ISBLK(mode):
        return it.BLOCKDEV
    return None  # sockets and unknown types are not backed up


def stat_fields(st: os.stat_result) -> dict:
    fields = {
        "m": st.st_mode,
        "u": st.st_uid,
        "g": st.st_gid,
        "mt": st.st_mtime_ns,
        "at": st.st_atime_ns,
        "ct": st.st_ctime_ns,
    }
    user = user_name(st.st_uid)
    if user is not None:
        fields["U"] = user
    group = group_name(st.st_gid)
    if group is not None:
        fields["G"] = group
    return fields


def read_xattrs(path: bytes) -> dict[bytes, bytes]:
    if not hasattr(os, "listxattr"):
        return {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    result = {}
    for name in names:
        try:
            result[os.fsencode(name)] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return result


@lru_cache(maxsize=1)
def _running_as_root() -> bool:
    return os.geteuid() == 0


def apply_metadata(path: bytes, item: dict, *, numeric_ids: bool = False, warn=None, fd: int | None = None) -> None:
    """Owner, mode, xattrs and times of a restored entry (times last: the others change ctime only).

    With ``fd`` (a regular file still open after its last write) the calls go through the descriptor:
    no path lookup per call, which a restore of many small files feels.
    """
    is_link = item["t"] == it.SYMLINK
    where: bytes | int = path if fd is None else fd
    nofollow = {"follow_symlinks": False} if fd is None else {}  # a descriptor can't be combined with it
    times_follow = {"follow_symlinks": not is_link} if fd is None else {}
    if _running_as_root():
        uid, gid = item.get("u", -1), item.get("g", -1)
        if not numeric_ids:
            uid = uid_of(item["U"]) if item.get("U") and uid_of(item["U"]) is not None else uid
            gid = gid_of(item["G"]) if item.get("G") and gid_of(item["G"]) is not None else gid
        try:
            os.chown(where, uid, gid, **nofollow)
        except OSError as exc:
            if warn:
                warn(path, f"cannot set owner: {exc.strerror}")
    for name, value in (item.get("x") or {}).items():
        try:
            os.setxattr(where, name, value, **nofollow)
        except OSError as exc:
            if warn:
                warn(path, f"cannot set xattr {os.fsdecode(name)}: {exc.strerror}")
    if not is_link:
        os.chmod(where, stat.S_IMODE(item["m"]))
    try:
        os.utime(where, ns=(item.get("at", item["mt"]), item["mt"]), **times_follow)
    except (NotImplementedError, OSError):
        if not is_link:
            raise
