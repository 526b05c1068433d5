"""A writer process for the concurrency and crash tests.

usage: python -m tests.helpers.cache_writer ROOT START STOP PART_SEQUENCES [DIM]
Writes keys START..STOP (in a shuffled order) as parts of PART_SEQUENCES sequences, printing
"ready" once imports are done and "committed" after each part, so a test can kill it at a
chosen point in the middle of its writes (not at a wall-clock time, which a loaded machine moves).
"""

import sys

import numpy as np

from biofuse.cache import EmbeddingCache
from tests.helpers.cache_data import FP, embedding, keys


def main() -> None:
    root, start, stop, per_part = sys.argv[1], *map(int, sys.argv[2:5])
    dim = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    store = EmbeddingCache(root, create=True).store(FP)
    ks = keys(stop - start, start)
    np.random.default_rng(start).shuffle(ks)
    print("ready", flush=True)
    todo = store.missing(ks)
    with store.writer(part_bytes=1 << 62) as w:
        for i, k in enumerate(todo, 1):
            w.add(k, embedding(k, dim))
            if i % per_part == 0:
                w.flush()
                print("committed", flush=True)


if __name__ == "__main__":
    main()
