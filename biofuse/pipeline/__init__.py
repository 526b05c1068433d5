"""biofuse's pipeline, one package per stage (docs/layout.md draws what flows between them):

data       a user's table -> a validated Dataset on the codon grid
encoders   frozen pretrained models behind one interface, and their registry
extract    a Dataset's sequences -> per-token embeddings in the cache
train      cached embeddings -> a fusion model and its run directory (`biofuse fit`)
finetune   one encoder trained end to end with a head (`biofuse finetune`, optional)
report     run directories -> results tables, a report page, figures
experiment an experiment file -> every stage above, over grids of runs (`biofuse run`)

Each stage imports only the ones above it in this list (tests/test_structure.py).
"""
