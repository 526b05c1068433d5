"""Command-line options built from the options dataclasses and the method registries, so an
option is declared once (biofuse/options.py) and the CLI cannot drift from the code."""

from __future__ import annotations

import click


def _click_type(f, hint):
    from biofuse.options import _base_type

    choices = f.metadata.get("choices")
    if choices:
        return click.Choice(list(choices))
    base = _base_type(hint)
    return {int: int, float: float}.get(base, str)


def dataclass_options(cls, *, dest=lambda f: f.name, defaults: bool = True,
                      required: tuple[str, ...] = ()):
    """click options for the option fields of ``cls`` (see biofuse.options)."""
    import dataclasses
    import typing

    from biofuse.options import _base_type, flag_name, option_fields

    hints = typing.get_type_hints(cls)

    def decorate(func):
        for f in reversed(option_fields(cls)):
            if not f.metadata.get("cli", True):
                continue
            kind = _base_type(hints[f.name])
            flag = flag_name(f, getattr(cls, "prefix", ""))
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
    from biofuse.options import _base_type, flag_name, option_fields

    hints = typing.get_type_hints(cls)
    out = {}
    for f in option_fields(cls):
        if not f.metadata.get("cli", True) or dest(f) not in kwargs:
            continue
        value = kwargs.pop(dest(f))
        if given_only and (value is None or value is False):
            continue
        if isinstance(value, str) and _base_type(hints[f.name]) is tuple:
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
