"""Training: run configs, the grain loader, the jitted train step and its loss, checkpoints, sharding, pLDDT heads.

* :mod:`~simplefold.training.config` – ``TrainConfig`` (the only place training defaults live), JSON files, overrides.
* :mod:`~simplefold.training.loader`, :mod:`~simplefold.training.cropping` – prepared chains to cropped feature batches.
* :mod:`~simplefold.training.state`, :mod:`~simplefold.training.step`, :mod:`~simplefold.training.losses` –
  parameters, optimizer and EMA; one pure train step; the flow-matching loss.
* :mod:`~simplefold.training.loop` – ``train(config)``: resume, log, validate, checkpoint.
* :mod:`~simplefold.training.checkpointing`, :mod:`~simplefold.training.sharding`, :mod:`~simplefold.training.export` –
  Orbax checkpoints, the device mesh, a run's weights as a model directory.
* :mod:`~simplefold.training.plddt` – ``train-plddt``: a pLDDT head trained on a model's own samples.
"""
