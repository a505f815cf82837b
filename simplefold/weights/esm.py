"""fair-esm ESM2 weights: read a released ``.pt`` without torch, convert it to Orbax, load it back.

Converted ESM2 weights (:func:`convert_official_esm2`) are a directory with ``config.json`` and an
Orbax checkpoint ``params/`` holding the parameter tree in the source dtype (float16 for the
released files, whose linear kernels stay float16 in memory and are widened exactly inside each
product; see :func:`simplefold.model.esm2.build_esm2`). Every loader returns an
:class:`simplefold.esm.ESM2Encoder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

from simplefold.esm import ESM2Encoder
from simplefold.utils.files import publish_directory, sha256_file
from simplefold.weights import torch_reader

#: Version of the converted-weights layout written by :func:`convert_official_esm2`.
ESM_CONVERSION_VERSION = 1
_CONVERTED_FORMAT = "simplefold-esm2"


class ESMWeightsError(ValueError):
    """An ESM2 weights file or converted directory is missing, corrupt or of the wrong layout."""


def load_official_esm2(pt_path: str | os.PathLike) -> ESM2Encoder:
    """Load a released fair-esm ESM2 ``.pt`` file (or a converted directory) without torch.

    Accepts the release layout ``{'model': state_dict, 'cfg': ...}`` with ``encoder.`` key
    prefixes, or a bare hub-layout state dict. Sizes come from the tensor shapes; ``cfg`` is
    ignored. Tensors are streamed one at a time into the parameter tree.

    Raises:
      ESMWeightsError: unreadable file or not an ESM2 checkpoint (the message names the file).
    """
    path = pathlib.Path(pt_path)
    if path.is_dir():
        return load_converted_esm2(path)
    from simplefold.model import esm2

    config, params = _read_official(path)
    return ESM2Encoder(esm2.build_esm2(config, params), source=path)


@contextlib.contextmanager
def _open_official(path: pathlib.Path):
    """(config, iterator of (name, array)) of a fair-esm file, in either key layout."""
    from simplefold.model import esm2

    if not path.is_file():
        raise ESMWeightsError(f"{path}: no such ESM2 weights file")
    try:
        try:
            sd = torch_reader.open_state_dict(path, prefix="model")
        except torch_reader.CheckpointError as exc:
            if "no entry 'model'" not in str(exc):
                raise
            sd = torch_reader.open_state_dict(path)  # hub layout: the state dict itself
        with sd:
            yield esm2.config_from_shapes(sd.shapes()), ((k, sd[k]) for k in sd)
    except (torch_reader.CheckpointError, esm2.ESM2LayoutError) as exc:
        raise ESMWeightsError(f"{path}: not a usable ESM2 checkpoint: {exc}") from exc


def _read_official(path: pathlib.Path):
    from simplefold.model import esm2

    with _open_official(path) as (config, items):
        return config, esm2.fill_params_from_state_dict(items, config, source=str(path))


def convert_official_esm2(
    pt_path: str | os.PathLike, out_dir: str | os.PathLike, *, source_sha256: str | None = None
) -> pathlib.Path:
    """Convert a fair-esm ``.pt`` into ``out_dir``: ``config.json`` and one Orbax checkpoint per
    parameter group (``params/top``, ``params/layer_000``, ...) in the source dtype.

    Memory: tensors are streamed one at a time and each block is saved as soon as it is
    complete, so the peak is about one block plus the embedding, not the model size.
    ``out_dir`` is written through a temporary sibling and renamed into place.

    Returns:
      ``out_dir`` as a path.
    """
    import orbax.checkpoint as ocp

    from simplefold.model import esm2

    path = pathlib.Path(pt_path)

    def write(tmp: pathlib.Path) -> None:
        dtype = None
        with _open_official(path) as (config, items):
            ckptr = ocp.Checkpointer(ocp.StandardCheckpointHandler())
            for group, tree in esm2.iter_param_groups(items, config, source=str(path)):
                ckptr.save(tmp / "params" / group, args=ocp.args.StandardSave(tree))
                if group == "top":
                    dtype = str(tree["embed_tokens"]["embedding"].dtype)
                del tree
            ckptr.close()
        meta = {
            "format": _CONVERTED_FORMAT,
            "conversion_version": ESM_CONVERSION_VERSION,
            "config": config.to_dict(),
            "groups": ["top"] + [f"layer_{i:03d}" for i in range(config.num_layers)],
            "dtype": dtype,
            "source_file": path.name,
            "source_sha256": source_sha256 or sha256_file(path),
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=1) + "\n")

    return publish_directory(out_dir, write, overwrite=True)


def load_converted_esm2(directory: str | os.PathLike) -> ESM2Encoder:
    """Load weights written by :func:`convert_official_esm2` (float32 compute; float16 kernels kept)."""
    import orbax.checkpoint as ocp

    from simplefold.model import esm2

    d = pathlib.Path(directory).absolute()
    try:
        meta = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ESMWeightsError(f"{d}: not a converted ESM2 directory ({exc})") from exc
    if meta.get("format") != _CONVERTED_FORMAT:
        raise ESMWeightsError(f"{d}/config.json: format {meta.get('format')!r} is not {_CONVERTED_FORMAT!r}")
    if meta.get("conversion_version") != ESM_CONVERSION_VERSION:
        raise ESMWeightsError(
            f"{d}: converted with layout version {meta.get('conversion_version')}, "
            f"this simplefold reads {ESM_CONVERSION_VERSION}; convert it again"
        )
    config = esm2.ESM2Config(**meta["config"])
    ckptr = ocp.Checkpointer(ocp.StandardCheckpointHandler())

    def groups():
        for group in meta["groups"]:
            try:
                yield group, ckptr.restore(d / "params" / group)
            except Exception as exc:  # orbax raises many types for damaged directories
                raise ESMWeightsError(f"{d}/params/{group}: cannot restore the ESM2 weights ({exc})") from exc

    try:
        params = esm2.stack_param_groups(groups(), config)
    finally:
        ckptr.close()
    return ESM2Encoder(esm2.build_esm2(config, params), identity=meta["source_sha256"])
