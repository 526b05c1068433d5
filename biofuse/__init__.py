"""biofuse: fuse frozen embeddings of pretrained DNA, RNA and protein language models."""

__version__ = "0.1.0"
