"""Files in and out: structures (PDB, mmCIF, BinaryCIF), FASTA inputs, prepared training datasets.

* :mod:`simplefold.io.structure` – read and write structures as frozen ``Structure`` objects.
* :mod:`simplefold.io.fasta` – strict and lenient FASTA reading of prediction inputs.
* :mod:`simplefold.io.dataset` – ``prepare-data``: structure files to per-chain arrays, and reading them back.
"""
