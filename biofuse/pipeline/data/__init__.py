"""The data stage: a user's table (CSV, TSV, Parquet, FASTA) becomes a validated Dataset.

Takes in: a path and a :class:`DataSpec` (which column holds what, the ORF policy, the split).
Hands on: a :class:`Dataset` — one row per example with ``id``, ``split``, ``group``, ``mrna``,
``dna``, ``protein`` (on the codon grid) and ``label:<name>`` columns — and its validation
:class:`Report` (rows kept and dropped with reasons, lengths, labels, splits, leakage, hash).

tables.py reads files, columns.py maps columns, sequences.py and dogma.py clean sequences and put
them on the codon grid, labels.py and splits.py read targets and splits, validation.py is the
report, dataset.py runs the steps in order.
"""

from biofuse.pipeline.data.dataset import Dataset, DataSpec, load_dataset
from biofuse.pipeline.data.validation import Report, format_report

__all__ = ["DataSpec", "Dataset", "Report", "format_report", "load_dataset"]
