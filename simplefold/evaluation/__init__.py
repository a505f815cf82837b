"""Evaluation: structure metrics, residue correspondence, scoring of prediction runs, ensemble analysis, benchmark sets.

* :mod:`simplefold.evaluation.metrics` – Kabsch, RMSD, TM-score and GDT (the ``TMscore`` search), lDDT.
* :mod:`simplefold.evaluation.alignment` – which predicted residue stands for which reference residue.
* :mod:`simplefold.evaluation.evaluate` – :func:`~simplefold.evaluation.evaluate.evaluate`: match
  prediction files to references and score every sample (``simplefold evaluate``).
* :mod:`simplefold.evaluation.geometry` – local chemistry and size (bond lengths, CA–CA, radius of
  gyration, clashes) and the check every predicted structure passes before it is written.
* :mod:`simplefold.evaluation.analysis` – ensembles: RMSF, pairwise RMSD, clusters (``simplefold analyze``).
* :mod:`simplefold.evaluation.evalsets` – a benchmark set (FASTA + one reference per chain) from
  prepared data (``simplefold eval-set``).
"""
