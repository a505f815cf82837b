"""Facts about SimpleFold and its official code that more than one module needs, each stated once.

Every number here is a property of the official model, featurizer or command line
(apple/ml-simplefold at ``c7a5570``; paper: arXiv 2509.18480); the modules that use one import it
from here rather than restating it. Importing this module imports nothing else.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------
# Coordinates and atom layout (src/simplefold/processor/protein_processor.py)
# --------------------------------------------------------------------------------------

#: Model coordinates are Å / 16 (``ProteinDataProcessor(scale=16)``).
COORD_SCALE = 16.0
#: Reference-conformer coordinates are Å / 5 (``ref_scale=5``).
REF_POS_SCALE = 5.0
#: Atoms are padded to a multiple of the atom-attention query block (``atom_n_queries``).
ATOM_WINDOW = 32

# --------------------------------------------------------------------------------------
# Feature widths (the Boltz featurizer the official code uses:
# src/simplefold/boltz_data_pipeline/feature/featurizer.py and const.py)
# --------------------------------------------------------------------------------------

#: Residue-type vocabulary (``const.tokens``): pad, gap, 20 amino acids, UNK, 5 RNA, 5 DNA.
NUM_RES_TYPES = 33
#: One-hot width of ``ref_element`` (atomic numbers).
NUM_ELEMENT_CLASSES = 128
#: Characters per atom name in ``ref_atom_name_chars`` ...
NUM_ATOM_NAME_CHARS = 4
#: ... and classes per character, ``(ord(c) - 32) % 64``.
NUM_CHAR_CLASSES = 64
#: Molecule types (protein, DNA, RNA, non-polymer) of ``mol_type``.
NUM_MOL_TYPES = 4
#: Classes of ``pocket_feature`` (always class 0 here: no pocket conditioning).
NUM_POCKET_CLASSES = 4
#: Distogram bins of ``disto_target`` and their range (Å); the network does not read it.
NUM_DISTO_BINS = 64
DISTO_MIN, DISTO_MAX = 2.0, 22.0

# --------------------------------------------------------------------------------------
# ESM2 conditioning (every released model reads ESM2-3B, esm2_t36_3B_UR50D)
# --------------------------------------------------------------------------------------

#: Representations of ESM2-3B: the embedding plus 36 layers ...
ESM_NUM_REPRESENTATIONS = 37
#: ... of 2560 channels each.
ESM_DIM = 2560

# --------------------------------------------------------------------------------------
# Sampler (official CLI, src/simplefold/cli.py, and src/simplefold/model/torch/sampler.py)
# --------------------------------------------------------------------------------------

#: Euler–Maruyama steps of the official CLI.
NUM_STEPS = 500
#: Noise scale τ of the official CLI (the paper folds with 0.01, samples ensembles with 0.6).
TAU = 0.1
#: τ of the official training configuration and ``EMSampler`` default; the pLDDT stage samples with it.
TAU_TRAINING = 0.3
#: First time of the sampling grid (t = 0 would switch the score's t·v term off).
T_START = 1e-4
#: The diffusion coefficient w(t) is 0 from this time on (the last steps are noise- and score-free).
W_CUTOFF = 0.99

# --------------------------------------------------------------------------------------
# lDDT and pLDDT (Mariani et al. 2013; the official ConfidenceModule,
# src/simplefold/model/torch/confidence_module.py)
# --------------------------------------------------------------------------------------

#: Inclusion radius (Å) of lDDT: pairs closer than this in the reference are scored.
LDDT_INCLUSION_RADIUS = 15.0
#: Distance-error thresholds (Å) of lDDT.
LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
#: Bins of the pLDDT head's classifier over [0, 1].
PLDDT_NUM_BINS = 50
