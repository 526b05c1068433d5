"""Command-line options built from the options dataclasses and the method registries, so an
option is declared once (biofuse/options.py) and the CLI cannot drift from the code."""

from __future__ import annotations

import functools

import click

from biofuse.pipeline.data import dogma, splits


def _click_type(f, hint):
    from biofuse.options import base_type

    choices = f.metadata.get("choices")
    if choices:
        return click.Choice(list(choices))
    base = base_type(hint)
    return {int: int, float: float}.get(base, str)


def _alias_dest(dest: str, alias: str) -> str:
    return f"{dest}__was__{alias}"


def dataclass_options(cls, *, dest=lambda f: f.name, defaults: bool = True,
                      required: tuple[str, ...] = ()):
    """click options for the option fields of ``cls`` (see biofuse.options)."""
    import dataclasses
    import typing

    from biofuse.options import alias_flags, base_type, flag_name, option_fields

    hints = typing.get_type_hints(cls)

    def decorate(func):
        for f in reversed(option_fields(cls)):
            if not f.metadata.get("cli", True):
                continue
            kind = base_type(hints[f.name])
            prefix = getattr(cls, "prefix", "")
            for alias, alias_flag in zip(f.metadata.get("aliases", ()), alias_flags(f, prefix)):
                func = click.option(alias_flag, _alias_dest(dest(f), alias), hidden=True,
                                    **({"is_flag": True, "default": None} if kind is bool
                                       else {"type": _click_type(f, hints[f.name])}))(func)
            flag = flag_name(f, prefix)
            default = f.default if f.default is not dataclasses.MISSING else None
            kwargs = {"help": f.metadata["help"]}
            if not defaults and default not in (None, False):
                shown = ",".join(map(str, default)) if kind is tuple else default
                kwargs["help"] += f"  [default: {shown}]"
            if kind is bool:
                kwargs.update(is_flag=True, default=bool(default) if defaults else None)
            else:
                kwargs["type"] = _click_type(f, hints[f.name])
                if kind is tuple and "comma" not in kwargs["help"]:
                    kwargs["help"] += " (comma-separated)"
                if f.name in required:
                    kwargs["required"] = True
                elif defaults and default is not None:
                    kwargs.update(default=(",".join(map(str, default)) if kind is tuple
                                           else default), show_default=True)
            func = click.option(flag, dest(f), **kwargs)(func)
        return func

    return decorate


def parsed_values(cls, kwargs: dict, *, dest=lambda f: f.name, given_only: bool = False) -> dict:
    """Pop the parsed values of ``cls``'s options from ``kwargs``; comma lists become tuples."""
    import typing

    from biofuse.errors import ConfigError
    from biofuse.options import alias_flags, base_type, flag_name, option_fields

    hints = typing.get_type_hints(cls)
    out = {}
    for f in option_fields(cls):
        if not f.metadata.get("cli", True) or dest(f) not in kwargs:
            continue
        value = kwargs.pop(dest(f))
        prefix = getattr(cls, "prefix", "")
        for alias, alias_flag in zip(f.metadata.get("aliases", ()), alias_flags(f, prefix)):
            former = kwargs.pop(_alias_dest(dest(f), alias), None)
            if former is None:
                continue
            if value not in (None, False, f.default):
                raise ConfigError(f"{alias_flag} and {flag_name(f, prefix)} are one option "
                                  f"({alias_flag} is its former name); both were given.",
                                  f"Give {flag_name(f, prefix)} only.")
            import warnings

            warnings.warn(f"{alias_flag} is now called {flag_name(f, prefix)}; the old flag "
                          "still works but will be removed.", FutureWarning, stacklevel=2)
            value = former
        if given_only and (value is None or value is False):
            continue
        if isinstance(value, str) and base_type(hints[f.name]) is tuple:
            hint = hints[f.name]
            if typing.get_origin(hint) is not tuple:  # Optional[tuple[...]]
                hint = next(a for a in typing.get_args(hint) if typing.get_origin(a) is tuple)
            (elem,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
            try:
                value = tuple(elem(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ConfigError(f"{flag_name(f, getattr(cls, 'prefix', ''))} {value!r} is not "
                                  f"a comma-separated list of {elem.__name__} values.",
                                  f"For example {','.join(map(str, f.default))}.") from None
        out[f.name] = value
    return out


def method_options(registry: dict, kind: str):
    """click options for every registered method's own options (``--mil-dim``, ``--channels``,
    ...), parsed as ``kind:method:field`` with no default so that what was given is known."""
    def decorate(func):
        for name in sorted(registry, reverse=True):
            cls = registry[name].Options
            func = dataclass_options(cls, dest=lambda f, n=name: f"{kind}__{n}__{f.name}",
                                     defaults=False)(func)
        return func

    return decorate


def parsed_method_values(registry: dict, kind: str, chosen: str, kwargs: dict) -> dict:
    """The options given for the ``chosen`` method; an option of another method is an error."""
    from biofuse.errors import ConfigError
    from biofuse.options import flag_name, option_fields

    chosen_values = {}
    for name in sorted(registry):
        cls = registry[name].Options
        given = parsed_values(cls, kwargs, dest=lambda f, n=name: f"{kind}__{n}__{f.name}",
                        given_only=True)
        if name == chosen:
            chosen_values = given
        elif given:
            flags = {f.name: flag_name(f, cls.prefix) for f in option_fields(cls)}
            used = ", ".join(flags[k] for k in given)
            raise ConfigError(f"{used} apply to --{kind} {name}, not --{kind} {chosen}.",
                              f"Drop them, or use --{kind} {name}.")
    return chosen_values


def data_options(func):
    """The options that say how a table becomes a dataset; they build a ``DataSpec``."""
    options = [
        click.option("--sequence-col", help="Column with the mRNA / CDS (T or U). Auto: mrna, "
                     "cds, sequence, seq, ..."),
        click.option("--dna-col", help="Column with a DNA sequence given separately (not derived)."),
        click.option("--protein-col", help="Column with a protein sequence given separately."),
        click.option("--label-col", "label_cols", multiple=True,
                     help="Target column; repeat for several targets. Auto: label, value, target, y."),
        click.option("--split-col", help="Column with train/val/test. Without one: a seeded "
                     "70/15/15 random split (or a group split with --group-col)."),
        click.option("--group-col", help="Column of groups (e.g. gene) that must not span splits."),
        click.option("--id-col", help="Column of unique ids. Default: row-1, row-2, ..."),
        click.option("--task", type=click.Choice(["auto", "regression", "classification"]),
                     default="auto", show_default=True),
        click.option("--orf", type=click.Choice(dogma.ORF_POLICIES),
                     default=dogma.DEFAULT_ORF_POLICY, show_default=True,
                     help="How a sequence is put on the codon grid: "
                     + "; ".join(f"'{k}': {v}" for k, v in dogma.ORF_POLICY_HELP.items())),
        click.option("--genetic-code", type=click.Choice([str(t) for t in dogma.GENETIC_CODES]),
                     default="1", show_default=True, help="NCBI genetic code table id."),
        click.option("--split-seed", type=int, default=0, show_default=True),
        click.option("--dedup", type=click.Choice(splits.DEDUP_POLICIES), default="none",
                     show_default=True, help="; ".join(f"'{k}': {v}"
                                                      for k, v in splits.DEDUP_HELP.items())),
        click.option("--sep", help="Field separator of a text table. Default: sniffed."),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from biofuse.pipeline.data import DataSpec

        names = ["sequence_col", "dna_col", "protein_col", "label_cols", "split_col",
                 "group_col", "id_col", "task", "orf", "genetic_code", "split_seed", "dedup", "sep"]
        fields = {k: kwargs.pop(k) for k in names}
        fields["label_cols"] = tuple(fields["label_cols"])
        fields["genetic_code"] = int(fields["genetic_code"])
        kwargs["spec"] = DataSpec(path=kwargs.pop("data"), **fields)
        return func(*args, **kwargs)

    return wrapper
