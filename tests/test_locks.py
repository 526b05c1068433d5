"""One writer per output folder: a second `biofuse run` / `biofuse fit` on the same folder is
refused while the first lives, and allowed once it has ended, however it ended."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from biofuse.errors import ConfigError
from biofuse.locks import exclusive

pytest.importorskip("fcntl")


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    with (exclusive(tmp_path / "out", "running an experiment", "Pass another --out."),
          pytest.raises(ConfigError) as err,
          exclusive(tmp_path / "out", "training a model", "Pass another --out.")):
        pass
    text = str(err.value)
    assert "is in use: process" in text and "has been running an experiment there since" in text
    assert "Pass another --out." in text
    with exclusive(tmp_path / "out", "running an experiment", "-"):  # released
        pass


def test_a_killed_holder_releases_the_folder(tmp_path):
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from biofuse.locks import exclusive
        with exclusive(Path({str(tmp_path / 'out')!r}), "x", "y"):
            print("held", flush=True)
            sys.stdin.readline()
            os._exit(9)  # dies holding it: no cleanup runs
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"process {proc.pid}"), exclusive(tmp_path / "out", "x", "y"):
        pass
    proc.communicate("\n", timeout=30)
    with exclusive(tmp_path / "out", "x", "y"):
        pass


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    with pytest.raises(ValueError), exclusive(tmp_path / "new" / "run", "x", "y"):
        raise ValueError("refused before writing anything")
    assert not (tmp_path / "new" / "run").exists()


def test_run_and_fit_refuse_a_folder_in_use(tmp_path):
    from click.testing import CliRunner

    from biofuse.cli import main
    from tests.test_experiment import table, write_toml

    path = write_toml(tmp_path, seeds=(0,))
    out = tmp_path / "out"
    with exclusive(out, "running an experiment", "-"):
        r = CliRunner().invoke(main, ["run", str(path), "--out", str(out)])
        assert r.exit_code == 2 and "is in use" in r.output and "Traceback" not in r.output
        assert not (out / "runs").exists()  # nothing ran
        data = table(tmp_path / "t.csv")
        r = CliRunner().invoke(main, ["fit", str(data), "--fusion", "none", "--label-col",
                                      "expression", "--out", str(out)])
        assert r.exit_code == 2 and "been running an experiment there since" in r.output, r.output


def test_finetune_refuses_a_run_directory_in_use(tmp_path):
    from click.testing import CliRunner

    from biofuse.cli import main
    from tests.test_experiment import table

    data = table(tmp_path / "t.csv")
    out = tmp_path / "ft"
    with exclusive(out, "finetuning a model", "-"):
        r = CliRunner().invoke(main, ["finetune", str(data), "--modality", "protein", "--model",
                                      "esm2_t6_8M", "--label-col", "expression", "--out",
                                      str(out)])
    assert r.exit_code == 2 and "been finetuning a model there since" in r.output, r.output
