"""The embedding cache: a directory of per-fingerprint stores of immutable parts.

```
CACHE/zarr.json                       group; attributes.biofuse_cache = {format_version, layout}
CACHE/<fingerprint id>/zarr.json      group; attributes.biofuse = {fingerprint, ...}
CACHE/<fingerprint id>/parts/<part>/  committed parts (see parts.py), oldest id first
CACHE/<fingerprint id>/tmp/<part>/    parts being written (or left by a crash; `gc` removes them)
```

This module opens, creates and lists the directory; store.py reads and writes one store.
See docs/cache-format.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from biofuse.cache.fingerprint import FORMAT_VERSION, Fingerprint
from biofuse.cache.meta import ROOT_ATTR, STORE_ATTR, group_doc, read_group_attrs, write_json_atomic
from biofuse.cache.parts import Layout
from biofuse.cache.store import EmbeddingStore
from biofuse.errors import CacheError, FingerprintMismatch


def default_cache_dir() -> Path:
    """``$BIOFUSE_CACHE``, else the per-user cache directory."""
    env = os.environ.get("BIOFUSE_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("biofuse")) / "embeddings"


def cache_location(root: str | Path) -> Path:
    """A cache root as a path: a filesystem path (``file://`` URLs included) as a
    :class:`pathlib.Path`, any other fsspec URL (``s3://``, ``gs://``, ``https://``, ...) as a
    read-only :class:`upath.UPath` over fsspec (the protocol's package, e.g. s3fs, must be
    installed; credentials come from the usual environment)."""
    text = str(root)
    if "://" not in text:
        return Path(text).expanduser()
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    from upath import UPath

    try:
        path = UPath(text)
        path.fs  # noqa: B018  (creates the filesystem: a missing package fails here, clearly)
        return path
    except (ImportError, ValueError) as exc:
        raise CacheError(f"Cannot open the cache URL {text}: {exc}.",
                         "Install the fsspec package for this protocol (s3fs for s3://, gcsfs "
                         "for gs://, adlfs for az://), or use a filesystem path.") from None


class EmbeddingCache:
    """A cache directory; holds one :class:`EmbeddingStore` per encoder fingerprint."""

    def __init__(self, root: str | Path, *, create: bool = False, layout: Layout | None = None):
        self.root = cache_location(root)
        if create and self.read_only:
            raise CacheError(
                f"biofuse cannot write a cache at {root}: writers commit each part with an atomic "
                "directory rename, which object stores do not have, so a crash could expose "
                "half-written data.",
                "Extract into a local or network-mounted directory, then copy it up (e.g. "
                "`aws s3 sync CACHE s3://...`); `biofuse fit`, `predict` and `cache info | "
                "verify | export` read caches from URLs.")
        attrs = read_group_attrs(self.root)
        if attrs is not None and ROOT_ATTR in attrs:
            meta = attrs[ROOT_ATTR]
            if meta.get("format_version") != FORMAT_VERSION:
                raise CacheError(
                    f"The cache at {self.root} has format version {meta.get('format_version')}; "
                    f"this biofuse reads version {FORMAT_VERSION}.",
                    "Use a matching biofuse version, or point --cache at a new directory.")
            self.layout = Layout(**meta.get("layout", {}))
            return
        if not create:
            self._refuse_open()
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise CacheError(
                f"{self.root} exists and is not a biofuse cache (no zarr.json with biofuse "
                "attributes), so biofuse will not write into it.",
                "Point --cache (or $BIOFUSE_CACHE) at a new or empty directory, or at an "
                "existing biofuse cache.")
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout = layout or Layout()
        write_json_atomic(self.root / "zarr.json", group_doc(
            {ROOT_ATTR: {"format_version": FORMAT_VERSION, "layout": self.layout.to_dict()}}))

    @property
    def read_only(self) -> bool:
        """URL caches (s3://, gs://, https://, ...) are read-only: see cache_location."""
        return not isinstance(self.root, Path)

    def _refuse_open(self) -> None:
        if not self.root.exists():
            raise CacheError(f"There is no cache at {self.root}.",
                             "Check the path, or run `biofuse extract` to create one there.")
        if self.root.is_dir() and not any(self.root.iterdir()):
            raise CacheError(f"{self.root} is an empty directory, not a biofuse cache.",
                             "Run `biofuse extract` with this --cache to fill it, or check the path.")
        raise CacheError(f"{self.root} is not a biofuse cache (no zarr.json with biofuse "
                         "attributes).", "Check the path: it should be the directory given to "
                         "`biofuse extract --cache`.")

    def orphan_dirs(self) -> list[Path]:
        """Store directories whose own metadata (zarr.json) is missing or unreadable, though
        they hold parts: invisible to readers until `biofuse cache gc` rebuilds it."""
        return sorted(p for p in self.root.iterdir() if p.is_dir() and (p / "parts").is_dir()
                      and STORE_ATTR not in (read_group_attrs(p) or {}))

    def adopt(self, path: Path) -> EmbeddingStore | None:
        """Rebuild the metadata of the orphaned store ``path`` from the fingerprint its parts
        record; None if no part records one that matches the directory's name."""
        for part in sorted((path / "parts").iterdir()):
            fp_doc = (read_group_attrs(part) or {}).get("fingerprint")
            try:
                fp = Fingerprint.from_dict(fp_doc) if fp_doc else None
            except (TypeError, ValueError):
                fp = None
            if fp is not None and fp.id == path.name:
                write_json_atomic(path / "zarr.json", group_doc(
                    {STORE_ATTR: {"fingerprint": fp.to_dict(), "fingerprint_id": fp.id,
                                  "format_version": FORMAT_VERSION}}))
                return EmbeddingStore(self, path, fp)
        return None

    def fingerprint_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and STORE_ATTR in (read_group_attrs(p) or {}))

    def stores(self) -> list[EmbeddingStore]:
        return [self.open_id(i) for i in self.fingerprint_ids()]

    def open_id(self, fp_id: str) -> EmbeddingStore:
        """The store named ``fp_id``: a folder directly in the cache (a path that leads
        elsewhere, such as ``../x/<id>``, names no store of this cache)."""
        plain = isinstance(fp_id, str) and fp_id not in ("", ".", "..") and \
            Path(fp_id).name == fp_id and "\\" not in fp_id
        path = self.root / fp_id if plain else None
        attrs = read_group_attrs(path) if path is not None else None
        if attrs is None or STORE_ATTR not in attrs:
            known = ", ".join(self.fingerprint_ids()) or "none"
            raise CacheError(f"The cache at {self.root} has no store {fp_id!r}.",
                             f"Known fingerprints: {known} (see `biofuse cache info`).")
        return EmbeddingStore(self, path, Fingerprint.from_dict(attrs[STORE_ATTR]["fingerprint"]))

    def store(self, fingerprint: Fingerprint, *, create: bool = True) -> EmbeddingStore:
        """The store for ``fingerprint``; created on first use unless ``create`` is False."""
        path = self.root / fingerprint.id
        attrs = read_group_attrs(path)
        if attrs is None:
            if not create or self.read_only:
                raise CacheError(f"The cache at {self.root} holds nothing for {fingerprint.id} "
                                 f"({fingerprint.model_id}, layer {fingerprint.layer}).",
                                 "Run `biofuse extract` for this encoder first.")
            (path / "parts").mkdir(parents=True, exist_ok=True)
            (path / "tmp").mkdir(exist_ok=True)
            write_json_atomic(path / "parts" / "zarr.json", group_doc({}))
            write_json_atomic(path / "zarr.json", group_doc(
                {STORE_ATTR: {"fingerprint": fingerprint.to_dict(), "fingerprint_id": fingerprint.id,
                              "format_version": FORMAT_VERSION}}))
        else:
            stored = attrs.get(STORE_ATTR, {}).get("fingerprint")
            if stored != fingerprint.to_dict():
                raise FingerprintMismatch(
                    f"The store {path} records a different encoder fingerprint than the one asked "
                    f"for (recorded: {stored}; asked: {fingerprint.to_dict()}).",
                    "The store was edited or copied by hand; move it away and re-extract.")
        return EmbeddingStore(self, path, fingerprint)
