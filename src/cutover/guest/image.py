"""The real guest's boot image: a Debian kernel and a busybox initramfs, built once, cached.

A QEMU guest needs a kernel whose own network stack answers ARP and ICMP, so the numbers
we measure include a real virtio-net device and a real guest kernel. Installing a kernel
package would pull systemd and touch /boot, so the image is made from Debian's own files
without installing anything:

- the kernel ABI is resolved from the ``linux-image-amd64`` metapackage's dependency
  (``6.1.0-57`` on Debian 12, ``6.12.x+deb13`` on 13), the package is fetched with
  ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a scratch directory;
- the uncompressed ``vmlinux`` is cut out of the bzImage so QEMU boots it via PVH (TCG
  boot ~2.7 s instead of ~5.2 s with the in-guest decompressor);
- the initramfs holds the static busybox (Debian ``busybox-static``), the virtio-net
  modules in dependency order (read from each module's ``.modinfo``; Debian 13 ships them
  xz-compressed and they are decompressed here) and an ``/init`` that configures the MAC's
  interface with the IP passed on the kernel command line (``cutover.ip=``).

The result lives in ``$CUTOVER_GUEST_CACHE`` (default ``/var/cache/cutover/guest``) under
``<abi>/``, built in a temporary directory and renamed into place under a file lock, so
two concurrent first uses build it once and a crash never leaves half an image.
Errors: :class:`~cutover.errors.PrerequisiteError` (tool or package missing, download
failed) with the command to run.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cutover.errors import PrerequisiteError
from cutover.guest.initramfs import BUSYBOX, NET_MODULES, build_initramfs, recipe_id

DEFAULT_CACHE = Path("/var/cache/cutover/guest")
META = "image.json"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ABI_RE = re.compile(r"Depends:\s*linux-image-(\S+)-amd64\b")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: ``kernel`` (vmlinux for PVH, or bzImage), ``initrd``, the ABI."""

    abi: str
    kernel: Path
    initrd: Path


def cache_root() -> Path:
    return Path(os.environ.get("CUTOVER_GUEST_CACHE", str(DEFAULT_CACHE)))


def parse_abi(apt_cache_depends: str) -> str:
    """The kernel ABI from ``apt-cache depends linux-image-amd64`` output.

    ``Depends: linux-image-6.1.0-57-amd64`` -> ``6.1.0-57``. Raises PrerequisiteError
    when no such line exists (package lists missing or not Debian).
    """
    m = _ABI_RE.search(apt_cache_depends)
    if m is None:
        raise PrerequisiteError(
            "cannot resolve the Debian kernel ABI: 'apt-cache depends linux-image-amd64' "
            "names no linux-image-<abi>-amd64; run 'apt-get update' (Debian only)"
        )
    return m.group(1)


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed ELF kernel inside an xz-compressed bzImage, or None.

    QEMU boots an ELF vmlinux through its PVH entry point; None means "boot the bzImage"
    (other compressions are not unpacked here: slower boot, same guest).
    """
    at = bzimage.find(_XZ_MAGIC)
    if at < 0:
        return None
    try:
        data = lzma.LZMADecompressor().decompress(bzimage[at:])
    except lzma.LZMAError:
        return None
    return data if data[:4] == b"\x7fELF" else None


def ensure_image(progress: Progress = lambda _m: None, root: Path | None = None) -> GuestImage:
    """The cached image for the current ``linux-image-amd64``, built first if missing."""
    root = root or cache_root()
    abi = resolve_abi(progress)
    found = _load(root / abi)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock", progress):
        found = _load(root / abi)  # another process built it while we waited
        if found is not None:
            return found
        return _build(root, abi, progress)


def resolve_abi(progress: Progress = lambda _m: None) -> str:
    """Resolve the ABI; runs ``apt-get update`` once if the package lists lack the kernel."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"], check=False)
    try:
        return parse_abi(out)
    except PrerequisiteError:
        progress("guest image: apt-get update (package lists lack linux-image-amd64)")
        _run(["apt-get", "update", "-qq"])
        return parse_abi(_run(["apt-cache", "depends", "linux-image-amd64"], check=False))


def _load(d: Path) -> GuestImage | None:
    try:
        meta = json.loads((d / META).read_text())
        img = GuestImage(meta["abi"], d / meta["kernel"], d / meta["initrd"])
        if meta.get("recipe") != recipe_id():
            return None  # built by an older cutover: rebuild
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return img if img.kernel.is_file() and img.initrd.is_file() else None


@contextlib.contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("guest image: another process is building it, waiting")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(root: Path, abi: str, progress: Progress) -> GuestImage:
    if not Path(BUSYBOX).is_file():
        raise PrerequisiteError(
            f"{BUSYBOX} is missing: 'apt-get install busybox-static' (scripts/install-debs)"
        )
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".build-{abi}-", dir=root) as tmp_s:
        tmp = Path(tmp_s)
        pkg = f"linux-image-{abi}-amd64"
        progress(f"guest image: apt-get download {pkg} (~70 MB, once)")
        _run(["apt-get", "download", pkg], cwd=tmp)
        debs = sorted(tmp.glob(f"linux-image-{abi}-amd64_*.deb"))
        if not debs:
            raise PrerequisiteError(f"apt-get download {pkg} produced no .deb in {tmp}")
        progress(f"guest image: unpacking {debs[0].name} (dpkg-deb -x, not installed)")
        kroot = tmp / "kroot"
        _run(["dpkg-deb", "-x", str(debs[0]), str(kroot)])
        out = tmp / "image"
        out.mkdir()
        vmlinuz = kroot / "boot" / f"vmlinuz-{abi}-amd64"
        if not vmlinuz.is_file():
            raise PrerequisiteError(f"{pkg} has no boot/vmlinuz-{abi}-amd64")
        progress("guest image: extracting vmlinux for PVH boot")
        raw = vmlinuz.read_bytes()
        vmlinux = extract_vmlinux(raw)
        kernel = "vmlinux" if vmlinux is not None else "vmlinuz"
        (out / kernel).write_bytes(vmlinux if vmlinux is not None else raw)
        progress("guest image: busybox initramfs with " + ", ".join(NET_MODULES))
        moddir = kroot / "lib" / "modules" / f"{abi}-amd64"
        if not moddir.is_dir():
            moddir = kroot / "usr" / "lib" / "modules" / f"{abi}-amd64"
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
            gz.write(build_initramfs(moddir))
        (out / "initramfs.cpio.gz").write_bytes(buf.getvalue())
        meta = {"abi": abi, "kernel": kernel, "initrd": "initramfs.cpio.gz",
                "package": debs[0].name, "recipe": recipe_id(),
                "built_s": round(time.monotonic() - t0, 1)}
        (out / META).write_text(json.dumps(meta, indent=2) + "\n")
        final = root / abi
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
    progress(f"guest image {abi} built in {time.monotonic() - t0:.1f} s ({root / abi})")
    img = _load(root / abi)
    assert img is not None
    return img


def _run(argv: list[str], cwd: Path | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:
        raise PrerequisiteError(f"{argv[0]} is missing; this needs a Debian machine") from e
    except subprocess.TimeoutExpired as e:
        raise PrerequisiteError(f"{' '.join(argv)} took over 600 s; check the mirror") from e
    if check and done.returncode != 0:
        raise PrerequisiteError(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-300:]}; "
            "check network access to the Debian mirror and that you run as root"
        )
    return done.stdout
