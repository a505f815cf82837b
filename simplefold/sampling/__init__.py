"""Sampling structures from the flow: the flow-matching path maths and the Euler–Maruyama sampler.

* :mod:`simplefold.sampling.flow` – the linear path between noise and data, its velocity and score,
  training-time t, the sampling time grids, centring, Kabsch alignment, random rotations.
* :mod:`simplefold.sampling.sampler` – the official ``EMSampler`` as one jitted ``lax.scan``, with
  per-sample keys so a sample does not depend on its chunk.
"""
