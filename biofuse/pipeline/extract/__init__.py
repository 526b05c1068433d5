"""The extract stage: frozen encoders embed a dataset's sequences into the cache.

Takes in: sequences of one modality (a Dataset column) and an :class:`ExtractOptions` (which
encoder, layer, dtype, token budget, long-sequence policy, workers).
Hands on: per-token embeddings in the cache (biofuse.cache), keyed by the encoder's fingerprint
and each sequence's content hash, and a :class:`Summary` of what was computed. Only what the
cache lacks is computed.

options.py holds the flags, plan.py asks the cache what is missing, compute.py embeds (in
process, or on Dask workers through distributed.py), extraction.py drives the stage.
"""

from biofuse.pipeline.extract.extraction import Summary, extract, extract_command
from biofuse.pipeline.extract.options import ExtractOptions

__all__ = ["ExtractOptions", "Summary", "extract", "extract_command"]
