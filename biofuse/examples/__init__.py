"""A small synthetic dataset shipped with biofuse, so `biofuse demo` runs with no download.

400 coding sequences (AUG, 40 random sense codons, a stop codon) whose label, ``expression``,
plants one signal per kind of sequence: a protein-level one (the share of hydrophobic residues)
and an mRNA-level one (GC content), plus noise, so each modality sees part of it and fusing them
helps. The ``upstream`` column is a random DNA region of the same length that carries no signal:
given as the DNA modality (``dna_col = "upstream"``), it is the negative control whose MIL
weight should fall to zero. Regenerate the shipped file with ``python -m biofuse.examples.make``;
a test checks that the file equals this generator's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from biofuse.pipeline.data import dogma

EXAMPLE_CSV = Path(__file__).with_name("synthetic_cds.csv")


def make_cds_example(n: int = 400, n_codons: int = 40, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    code = dogma.genetic_code(1)
    sense = sorted(c for c, aa in code.codons.items() if "N" not in c and aa != "*")
    stops = sorted(code.stops)
    ids, seqs, ys = [], [], []
    for i in range(n):
        codons = ["AUG", *rng.choice(sense, size=n_codons), rng.choice(stops)]
        seq = "".join(codons)
        protein = dogma.translate(seq)
        hydrophobic = np.mean([aa in "AVILMFWC" for aa in protein])
        gc = np.mean([b in "GC" for b in seq])
        ids.append(f"cds{i:04d}")
        seqs.append(seq)
        ys.append(round(float(10 * hydrophobic + 10 * gc + rng.normal(0, 0.3)), 4))
    noise = np.random.default_rng(seed + 1_000_003)  # its own stream: the CDSs stay as they were
    upstream = ["".join(noise.choice(list("ACGT"), size=len(s))) for s in seqs]
    return pl.DataFrame({"id": ids, "sequence": seqs, "upstream": upstream, "expression": ys})
