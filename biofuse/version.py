"""biofuse's version: recorded in every cache part and run directory, shown by --version."""

__version__ = "0.11.0"
