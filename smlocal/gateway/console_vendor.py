"""Fetches the console's third-party libraries into ``console_static/vendor/`` (never committed).

Each library is pinned by name, version and the npm registry's ``dist.integrity`` (sha512 of the
tarball, as ``npm view <pkg>@<version> dist`` shows it). The tarball comes from the npm registry
(``NPM_CONFIG_REGISTRY``, default https://registry.npmjs.org) through urllib, its digest is checked
before anything is unpacked, and only the listed files and the licence are written. Running it again
does nothing once every file is there (:func:`missing`). ``python -m smlocal.gateway.console_vendor``.

Files served (under ``/_smlocal/console/vendor/``):

* ``dagre/dagre.esm.js`` (ES module; ``import dagre from "../vendor/dagre/dagre.esm.js"``) and ``dagre/LICENSE``;
* ``uplot/uPlot.iife.min.js`` (a classic script defining ``window.uPlot``), ``uplot/uPlot.min.css``, ``uplot/LICENSE``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import logging
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).resolve().with_name("console_static") / "vendor"
DEFAULT_REGISTRY = "https://registry.npmjs.org"


@dataclasses.dataclass(frozen=True)
class Library:
    """One npm package: what to fetch and which of its files (tarball path → file name) to keep."""

    name: str
    version: str
    integrity: str  # npm's dist.integrity: "sha512-<base64>"
    folder: str
    files: tuple[tuple[str, str], ...]

    def tarball_url(self, registry: str) -> str:
        bare = self.name.rsplit("/", 1)[-1]
        return f"{registry.rstrip('/')}/{self.name}/-/{bare}-{self.version}.tgz"


LIBRARIES = (
    Library("@dagrejs/dagre", "3.1.3",
            "sha512-X4aUTwOReZvthaZWOVHqlJ52/ZdhZFEM4+Lh/uR4XooUSLE6p71bcy7MPGzYnNUcNh+nj+i/qJQpCMIdQnSmrg==",
            "dagre", (("package/dist/dagre.esm.js", "dagre.esm.js"), ("package/LICENSE", "LICENSE"))),
    Library("uplot", "1.6.32",
            "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
            "uplot", (("package/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
                      ("package/dist/uPlot.min.css", "uPlot.min.css"), ("package/LICENSE", "LICENSE"))),
)


FILE_SHA256 = {  # each served file as the pinned tarballs hold it (checked by the tests, see :func:`changed`)
    "dagre/dagre.esm.js": "b0ddaf4af1417bec9bd89373a3a3987f081727d6cc6d95fc40dbf85a19bdf3b0",
    "dagre/LICENSE": "6a349742a6cb219d5a2fc8d0844f6d89a6efc62e20c664450d884fc7ff2d6015",
    "uplot/uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uplot/uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "uplot/LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}


class VendorError(RuntimeError):
    """A library could not be fetched or did not match its pinned digest."""


def missing(target: Path = VENDOR_DIR) -> list[str]:
    """The vendor files (``folder/file``) not present under ``target`` (the cheap completeness check)."""
    return [f"{lib.folder}/{name}" for lib in LIBRARIES for _, name in lib.files
            if not (target / lib.folder / name).is_file()]


def changed(target: Path = VENDOR_DIR) -> list[str]:
    """The vendor files (``folder/file``) under ``target`` whose content is not the pinned one
    (:data:`FILE_SHA256`), missing files included."""
    found = []
    for lib in LIBRARIES:
        for _, name in lib.files:
            path = target / lib.folder / name
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            if digest != FILE_SHA256.get(f"{lib.folder}/{name}"):
                found.append(f"{lib.folder}/{name}")
    return found


def verify(data: bytes, integrity: str) -> None:
    """Raises :class:`VendorError` unless ``data`` has the sha512 of an npm ``integrity`` string."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise VendorError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise VendorError(f"integrity mismatch: expected sha512-{expected}, got sha512-{actual}")


def extract(library: Library, tarball: bytes, target: Path) -> None:
    """Writes the library's listed files from its (verified) tarball into ``target/<folder>/``.

    Only regular-file members named exactly in :attr:`Library.files` are read; nothing else of the
    archive is unpacked, so its other paths (or links) cannot write anywhere.
    """
    wanted = dict(library.files)
    folder = target / library.folder
    folder.mkdir(parents=True, exist_ok=True)
    found: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive:
            if member.name in wanted and member.isfile() and member.name not in found:
                content = archive.extractfile(member).read()
                temp = folder / f".{wanted[member.name]}.part"
                temp.write_bytes(content)
                os.replace(temp, folder / wanted[member.name])
                found.add(member.name)
    absent = set(wanted) - found
    if absent:
        raise VendorError(f"{library.name}@{library.version} has no {', '.join(sorted(absent))}")


def fetch(target: Path = VENDOR_DIR, registry: str | None = None, timeout: float = 60.0) -> list[str]:
    """Downloads, verifies and unpacks every library with a missing file; returns the libraries fetched."""
    registry = registry or os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY
    fetched = []
    for library in LIBRARIES:
        if all((target / library.folder / name).is_file() for _, name in library.files):
            continue
        url = library.tarball_url(registry)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - a configured https registry
                data = answer.read()
        except OSError as exc:
            raise VendorError(f"could not download {url}: {exc}") from exc
        verify(data, library.integrity)
        extract(library, data, target)
        fetched.append(f"{library.name}@{library.version}")
        log.info("fetched %s@%s into %s", library.name, library.version, target / library.folder)
    return fetched


def main() -> int:
    try:
        fetched = fetch()
    except VendorError as exc:
        print(f"console_vendor: {exc}", file=sys.stderr)
        return 1
    if fetched:
        print(f"console_vendor: fetched {', '.join(fetched)} into {VENDOR_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
