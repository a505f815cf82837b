"""Device mesh ("data", "fsdp"), parameter/optimizer sharding by rule, batch sharding, multi-host init.

Rule (``param_partition_spec``): an array with at least ``min_shard_elements`` elements is sharded
over the ``fsdp`` axis along its largest axis divisible by the fsdp size (ties: the last such
axis); everything else (small arrays, scalars, PRNG keys) is replicated. The optimizer moments and
the EMA have the parameters' shapes and get the same specs. The batch's leading (protein) axis is
sharded over ``("data", "fsdp")``. XLA's SPMD partitioner inserts the all-gathers and
reduce-scatters, so the train step itself is written for one device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from simplefold.training.config import MeshSection

logger = logging.getLogger(__name__)

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

_COORDINATOR_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def maybe_initialize_distributed(mesh_cfg: MeshSection) -> bool:
    """Call ``jax.distributed.initialize`` when asked to (must run before any other JAX call).

    ``distributed="auto"`` initialises when a coordinator is configured (``coordinator_address``,
    ``JAX_COORDINATOR_ADDRESS``) or when running under SLURM with several tasks or on a TPU pod
    (JAX auto-detects those); ``"true"`` always, ``"false"`` never. Returns whether it initialised.
    """
    mode = str(mesh_cfg.distributed).lower()
    if mode in ("false", "0", "no", "off"):
        return False
    explicit = mesh_cfg.coordinator_address or any(os.environ.get(k) for k in _COORDINATOR_ENV)
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    tpu_pod = bool(os.environ.get("TPU_WORKER_HOSTNAMES", "").count(","))
    if mode == "auto" and not (explicit or slurm or tpu_pod):
        return False
    if mesh_cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", mesh_cfg.cpu_collectives)
    kwargs: dict[str, Any] = {}
    address = mesh_cfg.coordinator_address or next((os.environ[k] for k in _COORDINATOR_ENV if os.environ.get(k)), None)
    if address:
        kwargs["coordinator_address"] = address
    if mesh_cfg.num_processes is not None:
        kwargs["num_processes"] = mesh_cfg.num_processes
    if mesh_cfg.process_id is not None:
        kwargs["process_id"] = mesh_cfg.process_id
    jax.distributed.initialize(**kwargs)
    logger.info("jax.distributed initialised: process %d of %d", jax.process_index(), jax.process_count())
    return True


def make_mesh(mesh_cfg: MeshSection, devices: list | None = None) -> Mesh:
    """A 2-D mesh of all (or the given) devices with axes ("data", "fsdp").

    Raises:
      ValueError: the axis sizes do not multiply to the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    fsdp = mesh_cfg.fsdp
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must divide the number of devices ({n})")
    data = n // fsdp if mesh_cfg.data == -1 else mesh_cfg.data
    if data * fsdp != n:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} != {n} devices")
    grid = np.asarray(devices, dtype=object).reshape(data, fsdp)
    return Mesh(grid, BATCH_AXES)


def param_partition_spec(shape: tuple[int, ...], fsdp_size: int, min_elements: int) -> PartitionSpec:
    """Spec of one parameter-shaped array under the FSDP rule (see module docstring)."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_elements:
        return PartitionSpec()
    best = None
    for axis, size in enumerate(shape):
        if size % fsdp_size == 0 and (best is None or size >= shape[best]):
            best = axis
    if best is None:
        return PartitionSpec()
    spec = [None] * len(shape)
    spec[best] = FSDP_AXIS
    return PartitionSpec(*spec)


def state_shardings(abstract_state: Any, mesh: Mesh, min_elements: int) -> Any:
    """NamedShardings for every leaf of a (possibly abstract) train-state pytree."""
    fsdp_size = mesh.shape[FSDP_AXIS]

    def one(x):
        return NamedSharding(mesh, param_partition_spec(tuple(np.shape(x)), fsdp_size, min_elements))

    return jax.tree.map(one, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis over all devices (data × fsdp), the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble this host's batch slice into global arrays sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def local_batch_size(batch_per_device: int, mesh: Mesh) -> int:
    """Proteins this host loads per step (its addressable devices × batch per device)."""
    local = sum(1 for d in mesh.devices.flat if d.process_index == jax.process_index())
    return batch_per_device * local


def fraction_sharded(state: Any) -> float:
    """Fraction of the state's elements stored sharded (not replicated); a quick FSDP sanity check."""
    total = sharded = 0
    for x in jax.tree.leaves(state):
        n = int(np.prod(np.shape(x)))
        total += n
        if hasattr(x, "sharding") and not x.sharding.is_fully_replicated:
            sharded += n
    return sharded / max(total, 1)
