"""The directory walk and the load-what-was-verified rule, one situation at a time: unsafe parents,
sticky directories, links, subdirectories someone else made, an unsafe TMPDIR, and a .so swapped
between its check and dlopen. Ownership changes need root (as in CI); those tests skip otherwise.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import cffi
import pytest

from softjit.runtime import bindings as loader, cache
from softjit.runtime.errors import UnsafeCacheError

ADD_CDEF = "int softjit_test_add(int a, int b);"
OTHER_UID = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="only root can give files to another user")


def use_cache(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(directory))
    return directory


def test_open_grandparent_is_refused_before_anything_is_made(tmp_path, monkeypatch,
                                                             make_add_asm) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # anyone may rename what is inside, at any time
    cache_dir = use_cache(monkeypatch, open_dir / "private" / "cache")
    with pytest.raises(UnsafeCacheError) as raised:
        cache.get_shared_object("adder", make_add_asm())
    message = str(raised.value)
    assert f"refusing to load kernels from {open_dir}:" in message
    assert "0777 lets group or others write to it" in message
    assert f"chmod go-w {open_dir}" in message and "SOFTJIT_CACHE_DIR" in message
    assert not (open_dir / "private").exists()
    assert not cache_dir.exists()


def test_sticky_parent_like_tmp_is_accepted(tmp_path, monkeypatch, make_add_asm, call_add) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    use_cache(monkeypatch, shared / "cache")
    path = cache.get_shared_object("adder", make_add_asm(3))
    assert call_add(path, 1, 1) == 5


def test_group_writable_parent_of_a_private_group_is_accepted(tmp_path, monkeypatch,
                                                             make_add_asm, call_add) -> None:
    # umask 002 with user-private groups makes ~/.cache 0775: harmless while the group holds no
    # one else. Here the group is this user's own primary group, with no other members.
    members = {user.pw_uid for user in pwd.getpwall() if user.pw_gid == os.getegid()}
    members |= {pwd.getpwnam(name).pw_uid for name in grp.getgrgid(os.getegid()).gr_mem}
    if members - {os.geteuid(), 0}:
        pytest.skip(f"group {os.getegid()} has other members here: {sorted(members)}")
    dot_cache = tmp_path / "home" / ".cache"
    dot_cache.mkdir(parents=True)
    dot_cache.chmod(0o775)
    use_cache(monkeypatch, dot_cache / "softjit")
    assert call_add(cache.get_shared_object("adder", make_add_asm(7)), 1, 1) == 9


@needs_root
def test_group_writable_parent_of_a_shared_group_is_refused(tmp_path, monkeypatch,
                                                            make_add_asm) -> None:
    dot_cache = tmp_path / "home" / ".cache"
    dot_cache.mkdir(parents=True)
    os.chown(dot_cache, 0, OTHER_UID)  # a group that holds uid 65534 (its primary group)
    dot_cache.chmod(0o775)
    if OTHER_UID not in {user.pw_uid for user in pwd.getpwall() if user.pw_gid == OTHER_UID}:
        pytest.skip(f"no user has primary group {OTHER_UID} here")
    use_cache(monkeypatch, dot_cache / "softjit")
    with pytest.raises(UnsafeCacheError, match=f"{dot_cache}: its mode 0775 lets group or others"):
        cache.get_shared_object("adder", make_add_asm())


@needs_root
def test_sticky_parent_with_someone_elses_next_component_is_refused(tmp_path, monkeypatch,
                                                                    make_add_asm) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    theirs = shared / "theirs"  # made by another user: they may rename it and put another there
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    use_cache(monkeypatch, theirs / "cache")
    with pytest.raises(UnsafeCacheError, match=f"{theirs} in it belongs to uid {OTHER_UID}"):
        cache.get_shared_object("adder", make_add_asm())
    assert not (theirs / "cache").exists()


@needs_root
def test_parent_owned_by_another_user_is_refused(tmp_path, monkeypatch, make_add_asm) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    use_cache(monkeypatch, theirs / "cache")
    with pytest.raises(UnsafeCacheError, match=f"owned by uid {OTHER_UID}"):
        cache.get_shared_object("adder", make_add_asm())


@needs_root
def test_link_in_a_sticky_dir_made_by_another_user_is_refused(tmp_path, monkeypatch,
                                                              make_add_asm) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    link = shared / "cache"
    link.symlink_to(mine)
    os.lchown(link, OTHER_UID, OTHER_UID)  # their link: they can repoint it whenever they like
    use_cache(monkeypatch, link)
    with pytest.raises(UnsafeCacheError, match=f"belongs to uid {OTHER_UID}"):
        cache.get_shared_object("adder", make_add_asm())
    assert not list(mine.iterdir())


def test_links_in_safe_directories_are_followed(tmp_path, monkeypatch, make_add_asm,
                                                call_add) -> None:
    # The user's own links (~/.cache -> /data/cache, relative ones with ..) keep working.
    real = tmp_path / "data" / "real-cache"
    real.mkdir(parents=True, mode=0o700)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "cache").symlink_to("../data/real-cache")
    use_cache(monkeypatch, tmp_path / "home" / "cache")
    path = cache.get_shared_object("adder", make_add_asm(4))
    assert call_add(path, 1, 1) == 6
    assert list(real.glob("*/*/kernel-*.so"))


def make_foreign(path: Path, how: str, elsewhere: Path) -> None:
    """A subdirectory softjit did not make: open to everyone, another user's, or a link to a
    private directory `elsewhere` (outside the cache)."""
    if how == "link":
        elsewhere.mkdir(mode=0o700)
        path.symlink_to(elsewhere)
        return
    path.mkdir(mode=0o700)
    if how == "mode-0777":
        path.chmod(0o777)
    else:
        os.chown(path, OTHER_UID, OTHER_UID)


@pytest.mark.parametrize("how", ["mode-0777", pytest.param("other-owner", marks=needs_root),
                                 "link"])
@pytest.mark.parametrize("subdir", ["tmp", "locks", "shard", "entry"])
def test_subdirectories_someone_else_made_are_refused(cache_dir, tmp_path, make_add_asm, subdir,
                                                      how) -> None:
    asm = make_add_asm()
    key = cache.cache_key(asm)
    cache_dir.mkdir(mode=0o700)
    if subdir == "entry":
        (cache_dir / key[:2]).mkdir(mode=0o700)
    relative = {"tmp": "tmp", "locks": "locks", "shard": key[:2], "entry": f"{key[:2]}/{key}"}
    make_foreign(cache_dir / relative[subdir], how, tmp_path / "elsewhere")
    with pytest.raises(UnsafeCacheError) as raised:
        cache.get_shared_object("adder", asm)
    assert str(cache_dir / relative[subdir]) in str(raised.value)
    # Nothing was built into it.
    assert not list(cache_dir.rglob("kernel-*.so"))


def test_unsafe_tmpdir_is_refused_for_builds(tmp_path, monkeypatch, make_add_asm) -> None:
    # as and ld write the object by name in a scratch directory under TMPDIR: if others could
    # swap that directory, the bytes read back (and then cached with their hash) could be theirs.
    open_tmp = tmp_path / "open-tmp"
    open_tmp.mkdir()
    open_tmp.chmod(0o777)
    monkeypatch.setenv("TMPDIR", str(open_tmp))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile caches gettempdir()
    with pytest.raises(UnsafeCacheError) as raised:
        cache.get_shared_object("adder", make_add_asm())
    assert f"refusing to load kernels from {open_tmp}" in str(raised.value)
    assert "TMPDIR" in str(raised.value)


def swap_published_object(entry: Path, replacement: bytes) -> None:
    """Replace every .so of `entry` by rename, as someone racing the loader would."""
    for so_path in entry.glob("kernel-*.so"):
        staged = entry / "swap.tmp"
        staged.write_bytes(replacement)
        staged.rename(so_path)


def test_the_loaded_object_is_the_verified_one(make_add_asm, monkeypatch, tmp_path) -> None:
    """Between the cache's checks and dlopen the .so is swapped for other code: the loader must
    still map the inode that was checked (it loads through the verified descriptor)."""
    wanted, other = make_add_asm(1), make_add_asm(500)
    other_bytes = cache.get_shared_object("other", other).read_bytes()
    entry = cache.get_shared_object("primer", wanted).parent  # the entry exists: a cache hit
    real_dlopen = cffi.FFI.dlopen

    def swap_then_dlopen(ffi, name, *args):
        swap_published_object(entry, other_bytes)
        return real_dlopen(ffi, name, *args)

    monkeypatch.setattr(cffi.FFI, "dlopen", swap_then_dlopen)
    _ffi, lib = loader.load_library("adder", wanted, ADD_CDEF)
    assert lib.softjit_test_add(2, 3) == 6  # the checked object (offset 1), not the swapped one


def test_loads_of_different_objects_never_alias(make_add_asm) -> None:
    # glibc recognises a loaded library by its path string; /proc/self/fd/N must never name two
    # objects in one process, whatever the descriptor numbers do.
    values = []
    for offset in range(12):
        _ffi, lib = loader.load_library(f"adder{offset}", make_add_asm(offset), ADD_CDEF)
        values.append(lib.softjit_test_add(0, 0))
    assert values == list(range(12))


def test_cache_modes_after_a_build(cache_dir, make_add_asm) -> None:
    asm = make_add_asm()
    path = cache.get_shared_object("adder", asm)
    for directory in (cache_dir, cache_dir / "tmp", cache_dir / "locks", path.parent.parent,
                      path.parent):
        info = directory.lstat()
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, directory
    assert (cache_dir / "CACHEDIR.TAG").read_text().startswith(
        "Signature: 8a477f597d28d172789f06886806bc55\n")
