"""The registry of released weights: one :class:`WeightsEntry` per file, and the errors of ``simplefold.weights``.

Built-in entries: the six SimpleFold sizes and the pLDDT head (Apple's CDN), the fair-esm ESM2
models and their contact-regression heads. Mirrors and tests: ``$SIMPLEFOLD_WEIGHTS_URL`` replaces
every base URL (files are then fetched from ``<that URL>/<file name>``);
``$SIMPLEFOLD_WEIGHTS_URL_<NAME>`` (name upper-cased, other characters -> ``_``) replaces one
entry's full URL; ``$SIMPLEFOLD_REGISTRY`` names a JSON file with extra or replacement entries
(``{"entries": [{"name": ..., "kind": ..., "url": ..., ...}]}``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

SIMPLEFOLD_BASE_URL = "https://ml-site.cdn-apple.com/models/simplefold/"
ESM_BASE_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/"
ESM_REGRESSION_BASE_URL = "https://dl.fbaipublicfiles.com/fair-esm/regression/"
#: Kinds of entries and what conversion they get.
KINDS = ("simplefold", "plddt", "esm2", "raw")


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class WeightsError(Exception):
    """Base class of weights-manager errors; the message is meant for the user."""


class UnknownWeightsError(WeightsError):
    """No registry entry has that name."""


class DownloadError(WeightsError):
    """The server answered with a permanent error (e.g. 404) or retries were exhausted."""


class OfflineError(DownloadError):
    """The server cannot be reached at all (no network, DNS failure, connection refused)."""


class ChecksumError(WeightsError):
    """A file's sha256 or size does not match the registry or its record."""


class NotInstalledError(WeightsError):
    """The entry is not in the cache and ``offline=True`` forbids fetching it."""


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One released weights file.

    Attributes:
      name: registry name (``simplefold_100M``, ``esm2_t36_3B_UR50D``, ...).
      kind: ``simplefold`` / ``plddt`` (converted by ``simplefold.weights.checkpoints``), ``esm2``
        (converted by ``simplefold.esm``) or ``raw`` (downloaded, not converted).
      url: where the official file lives.
      filename: file name of the source file.
      arch: architecture passed to ``checkpoints.convert_official`` (``simplefold_100M``,
        ``plddt_1.6B``, or an official ``summary`` dict for custom models).
      sha256: known hex digest of the source file, or None when unknown.
      size: known size in bytes, or None.
      description: one line for ``simplefold weights list``.
    """

    name: str
    kind: str
    url: str
    filename: str
    arch: str | dict | None = None
    sha256: str | None = None
    size: int | None = None
    description: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"weights entry {self.name!r}: kind {self.kind!r} not in {KINDS}")

    @property
    def effective_url(self) -> str:
        """The URL after the ``$SIMPLEFOLD_WEIGHTS_URL[_<NAME>]`` overrides."""
        per_entry = os.environ.get("SIMPLEFOLD_WEIGHTS_URL_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper()))
        if per_entry:
            return per_entry
        base = os.environ.get("SIMPLEFOLD_WEIGHTS_URL")
        if base:
            return base.rstrip("/") + "/" + self.filename
        return self.url

    def import_command(self) -> str:
        return f"simplefold weights import {self.filename} --name {self.name}"


SIMPLEFOLD_SIZES = ("100M", "360M", "700M", "1.1B", "1.6B", "3B")
ESM2_RELEASES = ("t6_8M", "t12_35M", "t30_150M", "t33_650M", "t36_3B", "t48_15B")


def _builtin_entries() -> list[WeightsEntry]:
    entries = [
        WeightsEntry(
            name=f"simplefold_{size}",
            kind="simplefold",
            url=f"{SIMPLEFOLD_BASE_URL}simplefold_{size}.ckpt",
            filename=f"simplefold_{size}.ckpt",
            arch=f"simplefold_{size}",
            description=f"SimpleFold {size} folding model (Apple, non-commercial model licence)",
        )
        for size in SIMPLEFOLD_SIZES
    ]
    entries.append(
        WeightsEntry(
            name="plddt_module_1.6B",
            kind="plddt",
            url=f"{SIMPLEFOLD_BASE_URL}plddt_module_1.6B.ckpt",
            filename="plddt_module_1.6B.ckpt",
            arch="plddt_1.6B",
            description="pLDDT head (runs on the SimpleFold 1.6B latent)",
        )
    )
    for rel in ESM2_RELEASES:
        stem = f"esm2_{rel}_UR50D"
        entries.append(
            WeightsEntry(
                name=stem,
                kind="esm2",
                url=f"{ESM_BASE_URL}{stem}.pt",
                filename=f"{stem}.pt",
                description=f"ESM2 {rel.split('_')[1]} protein language model (fair-esm, MIT)",
            )
        )
        entries.append(
            WeightsEntry(
                name=f"{stem}-contact-regression",
                kind="raw",
                url=f"{ESM_REGRESSION_BASE_URL}{stem}-contact-regression.pt",
                filename=f"{stem}-contact-regression.pt",
                description="ESM2 contact-regression head (not used by simplefold)",
            )
        )
    return entries


#: Short names used by SimpleFold configs (``esm_model: esm2_3B``) and the CLI.
ALIASES: dict[str, str] = {f"esm2_{rel.split('_')[1]}": f"esm2_{rel}_UR50D" for rel in ESM2_RELEASES} | {
    "plddt": "plddt_module_1.6B"
}


def registry() -> dict[str, WeightsEntry]:
    """Name -> entry: the built-in releases plus the entries of ``$SIMPLEFOLD_REGISTRY``."""
    entries = {e.name: e for e in _builtin_entries()}
    extra = os.environ.get("SIMPLEFOLD_REGISTRY")
    if extra:
        path = pathlib.Path(extra)
        try:
            data = json.loads(path.read_text())
            items = data["entries"] if isinstance(data, dict) else data
            for item in items:
                entry = WeightsEntry(**item)
                entries[entry.name] = entry
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path} ($SIMPLEFOLD_REGISTRY): not a valid registry file ({exc})") from exc
    return entries


def get_entry(name: str) -> WeightsEntry:
    """The registry entry for ``name`` (aliases such as ``esm2_3B`` accepted)."""
    reg = registry()
    name = ALIASES.get(name, name) if name not in reg else name
    if name not in reg:
        raise UnknownWeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]
