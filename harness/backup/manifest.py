"""A backup directory on the harness's side: its layout, its metadata and its manifest of sha256 checksums.

The manifest is in `sha256sum` format, so an operator can check a backup by hand
(`cd DIR && sha256sum -c MANIFEST.sha256`). It covers every regular file of the directory,
including `backup.json`. A restore verifies the whole directory against it before anything is
done to the cluster: one changed byte, a missing file or a file the backup never had refuses
the restore, naming the file (`BackupRefused`, exit status 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BackupRefused

MANIFEST = "MANIFEST.sha256"
META = "backup.json"
CIB = "cluster/cib.xml"
DATA = "data"
"""DIR/data/<group>/… holds the files of the group's shared filesystem, as they were at the backup point."""
FORMAT = 1
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


@dataclass
class GroupData:
    """One group's filesystem in the backup: where it was read, and how much."""

    node: str
    mount: str
    files: int
    bytes: int
    point_wall: float
    """Wall time just before the filesystem was frozen: every write acknowledged before it is in the backup."""
    freeze_s: float | None = None
    """How long writes were held (the freeze, measured on the node)."""


@dataclass
class BackupMeta:
    """What `backup.json` says: which cluster, when, what is in the directory, and how long it took."""

    topology: str
    stack: str
    created_wall: float
    groups: dict[str, GroupData] = field(default_factory=dict)
    config: str | None = None
    """The CIB dump's path in the directory (None: the backup has no cluster configuration)."""
    timings: dict[str, float] = field(default_factory=dict)
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: Path) -> BackupMeta:
        try:
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r} (this fallover reads format {FORMAT})")
            groups = {name: GroupData(**g) for name, g in dict(raw.get("groups") or {}).items()}
            return cls(topology=str(raw["topology"]), stack=str(raw["stack"]),
                       created_wall=float(raw["created_wall"]), groups=groups, config=raw.get("config"),
                       timings={k: float(v) for k, v in dict(raw.get("timings") or {}).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise BackupRefused(f"{where}: not a fallover backup description: {e}") from None


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Every regular file below ``root`` except the manifest, as sorted POSIX paths relative to it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != MANIFEST and p.is_file() and not p.is_symlink():
                out.append(rel)
    return sorted(out)


def write_manifest(root: Path) -> dict[str, str]:
    """Checksum every file of ``root`` into ``root/MANIFEST.sha256`` (written whole, then renamed)."""
    sums = {}
    for rel in _files(root):
        if "\n" in rel or "\\" in rel:
            raise BackupRefused(f"{root / rel}: a file name with a newline or backslash cannot go in the manifest")
        sums[rel] = digest(root / rel)
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text("".join(f"{h}  {rel}\n" for rel, h in sums.items()))
    os.replace(tmp, root / MANIFEST)
    return sums


def read_manifest(root: Path) -> dict[str, str]:
    path = root / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BackupRefused(f"{path}: no manifest: {root} is not a fallover backup (or it is incomplete)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BackupRefused(f"{path}: cannot read the manifest: {e}") from None
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        rel = m.group(2) if m else ""
        if m is None or rel.startswith("/") or ".." in Path(rel).parts:
            raise BackupRefused(f"{path}:{n}: not a manifest line (want '<sha256>  <relative path>'): {line[:80]!r}")
        sums[rel] = m.group(1)
    return sums


def verify(root: Path) -> dict[str, str]:
    """The manifest, once every file of ``root`` matches it; else BackupRefused naming the first file that does not."""
    if not root.is_dir():
        raise BackupRefused(f"{root}: no such backup directory")
    sums = read_manifest(root)
    present = set(_files(root))
    for rel, want in sums.items():
        path = root / rel
        if rel not in present:
            raise BackupRefused(f"{path}: missing (the manifest lists it): refusing to restore an incomplete backup")
        got = digest(path)
        if got != want:
            raise BackupRefused(f"{path}: checksum mismatch, the file changed after the backup "
                                f"(sha256 {got[:16]}…, manifest {want[:16]}…): refusing to restore")
    extra = sorted(present - set(sums))
    if extra:
        raise BackupRefused(f"{root / extra[0]}: not in the manifest (added after the backup): refusing to restore")
    return sums


def write_meta(root: Path, meta: BackupMeta) -> None:
    (root / META).write_text(json.dumps(meta.to_dict(), indent=1) + "\n")


def read_meta(root: Path) -> BackupMeta:
    """The backup's description; call after `verify` (the manifest vouches for it)."""
    path = root / META
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupRefused(f"{path}: missing: {root} is not a fallover backup") from None
    except (OSError, ValueError) as e:
        raise BackupRefused(f"{path}: cannot read: {e}") from None
    if not isinstance(raw, dict):
        raise BackupRefused(f"{path}: expected a JSON object")
    return BackupMeta.from_dict(raw, path)
