"""The sha256 of each module's assembly text (and its cffi declarations), remembered across
processes so that loading a cached or prebuilt module does not generate its assembly again.

An index maps module name -> {"asm_sha256", "cdef"} for one (softjit version, generator
fingerprint). The fingerprint is the sha256 of the source of everything that generates assembly
(every file of softjit.codegen and softjit.templates, by relative path and bytes), computed once
per process when first needed: a changed generator has another fingerprint, hence an empty
index, hence regenerates and rebuilds. A hash found here only names what to look for; the cache
and the prebuilt manifests still verify the object they hand out.

Two places hold indexes (a prebuilt directory's wins):
- asm-index.json beside prebuilt objects (`softjit build` writes it), for the fingerprint it
  records;
- <cache dir>/asm-index/<version>-<fingerprint>.json, written after a module's assembly was
  generated in a process (atomically replaced, so a reader sees a complete file), opened and
  checked like the rest of the cache (runtime/files.py); `softjit cache clear` removes it.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

from softjit.runtime.forksafe import ForkSafeLock

FORMAT = 1
_GENERATOR_PACKAGES = ("softjit.codegen", "softjit.templates")
# Folders of softjit.codegen that generate no assembly (the emulator only runs it).
_NOT_GENERATOR = frozenset({"emulator", "__pycache__"})

_lock = ForkSafeLock()

_memo: dict = {}


def generator_fingerprint() -> str:
    """sha256 over the relative path and bytes of every source file of the generator (every
    .py and .j2 file of softjit.codegen and softjit.templates, the emulator excepted)."""
    found = _memo.get("fingerprint")
    if found is None:
        digest = hashlib.sha256()
        for package in _GENERATOR_PACKAGES:
            root = _package_dir(package)
            for relative in sorted(_source_files(root, "")):
                digest.update(f"{package}/{relative}\0".encode())
                with open(os.path.join(root, relative), "rb") as stream:
                    digest.update(stream.read())
                digest.update(b"\0")
        found = _memo["fingerprint"] = digest.hexdigest()
    return found


def _package_dir(package: str) -> str:
    return os.path.dirname(importlib.import_module(package).__file__)


def _source_files(root: str, relative: str):
    with os.scandir(os.path.join(root, relative)) as entries:
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_dir() and entry.name not in _NOT_GENERATOR:
                yield from _source_files(root, path)
            elif entry.is_file() and entry.name.endswith((".py", ".j2")):
                yield path


def _version() -> str:
    from softjit._version import __version__

    return __version__


def index_name() -> str:
    return f"{_version()}-{generator_fingerprint()[:32]}.json"


def _open_index_dir(create: bool):
    """The cache's index directory, opened and verified like the rest of the cache."""
    from softjit.runtime.cachedir import ASM_INDEX_DIR_NAME, CACHE_DIR_REMEDY, open_cache_root
    from softjit.runtime.files import open_private_subdir

    root = open_cache_root()
    try:
        return open_private_subdir(root, ASM_INDEX_DIR_NAME, create=create, remedy=CACHE_DIR_REMEDY)
    finally:
        root.close()


def _read_cache_index() -> dict:
    from softjit.runtime.cachedir import CACHE_DIR_REMEDY
    from softjit.runtime.files import open_trusted_file, read_fd

    try:
        directory = _open_index_dir(create=False)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    with directory:
        try:
            descriptor, _info = open_trusted_file(directory, index_name(), owners={os.geteuid()},
                                                  remedy=CACHE_DIR_REMEDY)
        except FileNotFoundError:
            return {}
        try:
            return _parse(read_fd(descriptor))
        finally:
            os.close(descriptor)


SHIPPED_NAME = "asm-index.json"


def _shipped_indexes() -> dict:
    """What the prebuilt directories' indexes say (each for the fingerprint it records)."""
    from softjit.runtime.prebuilt import prebuilt_dirs

    found: dict = {}
    for directory in reversed(prebuilt_dirs()):  # the first directory searched wins
        found.update(_read(directory / SHIPPED_NAME))
    return found


def write_shipped(directory: Path, modules: dict) -> Path:
    """Write the index of prebuilt objects {name: (asm_sha256, cdef)} into `directory`."""
    path = Path(directory) / SHIPPED_NAME
    staging = path.with_name(f".{SHIPPED_NAME}.tmp")
    staging.write_text(document(modules), encoding="utf-8")
    os.replace(staging, path)
    return path


def _read(path: Path) -> dict:
    try:
        return _parse(path.read_bytes())
    except OSError:
        return {}


def _parse(data: bytes) -> dict:
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    if (not isinstance(document, dict) or document.get("format") != FORMAT
            or document.get("version") != _version()
            or document.get("generator") != generator_fingerprint()):
        return {}
    modules = document.get("modules")
    return {name: entry for name, entry in modules.items()
            if isinstance(entry, dict) and isinstance(entry.get("asm_sha256"), str)
            and isinstance(entry.get("cdef"), str)} if isinstance(modules, dict) else {}


def _known() -> dict:
    found = _memo.get("known")
    if found is None:
        with _lock:
            found = _memo.get("known")
            if found is None:
                found = dict(_read_cache_index())
                found.update(_shipped_indexes())
                _memo["known"] = found
    return found


def lookup(name: str) -> tuple[str, str] | None:
    """(asm_sha256, cdef) of module `name` as the current generator emits it, if recorded."""
    try:
        entry = _known().get(name)
    except Exception:  # an unusable cache directory: the caller generates, as without an index
        return None
    return None if entry is None else (entry["asm_sha256"], entry["cdef"])


def document(modules: dict) -> str:
    """The index file text for {name: (asm_sha256, cdef)}."""
    return json.dumps({
        "format": FORMAT, "version": _version(), "generator": generator_fingerprint(),
        "modules": {name: {"asm_sha256": sha, "cdef": cdef}
                    for name, (sha, cdef) in sorted(modules.items())},
    }, indent=1, sort_keys=True) + "\n"


def remember(name: str, asm_sha256: str, cdef: str) -> None:
    """Record a module's hash in the cache's index (best effort: an index that cannot be
    written only means generating again next time). The file is replaced whole by rename, so
    readers see the old or the new index, never a part."""
    import secrets

    from softjit.runtime.files import write_new_file

    known = _known()
    entry = {"asm_sha256": asm_sha256, "cdef": cdef}
    if known.get(name) == entry:
        return
    with _lock:
        known[name] = entry
        try:
            current = _read_cache_index()
            current[name] = entry
            text = document({k: (v["asm_sha256"], v["cdef"]) for k, v in current.items()})
            with _open_index_dir(create=True) as directory:
                staging = f".{index_name()}.{secrets.token_hex(8)}.tmp"
                write_new_file(directory, staging, text.encode("utf-8"), 0o600)
                try:
                    os.replace(staging, index_name(), src_dir_fd=directory.fd,
                               dst_dir_fd=directory.fd)
                except BaseException:
                    os.unlink(staging, dir_fd=directory.fd)
                    raise
        except Exception:  # noqa: BLE001 - see the docstring
            pass


def forget() -> None:
    """Drop what this process read (tests; after the cache directory changed)."""
    with _lock:
        _memo.pop("known", None)
