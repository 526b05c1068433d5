"""Regenerate the shipped example: ``python -m biofuse.examples.make``."""

from biofuse.examples import EXAMPLE_CSV, make_cds_example

if __name__ == "__main__":
    make_cds_example().write_csv(EXAMPLE_CSV)
    print(f"wrote {EXAMPLE_CSV}")
