"""The command line as a user meets it: help, version, clean errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from biofuse import __version__
from biofuse.cli import main

CDS = "AUGAAACCCGGGUAA"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version_and_help():
    assert __version__ in run("--version").output
    out = run("--help").output
    assert "data" in out
    assert "Example" in run("data", "inspect", "--help").output


def test_inspect_text_and_json(write):
    path = write("t.csv", f"sequence,label\n{CDS},1.5\n{CDS[:-3]}UAG,2.5\nAUGZ,3\n")
    res = run("data", "inspect", path)
    assert res.exit_code == 0, res.output
    assert "dropped      1  invalid character" in res.output
    assert "dataset hash" in res.output
    res = run("data", "inspect", path, "--json")
    report = json.loads(res.output)
    assert report["rows_kept"] == 2 and report["dropped"] == {"invalid character": 1}


def test_user_error_is_one_paragraph_exit_2(write):
    path = write("t.csv", f"Sequence,Value\n{CDS},1\n")
    res = run("data", "inspect", path, "--sequence-col", "seq")
    assert res.exit_code == 2
    assert res.output.startswith("error: There is no column 'seq'")
    assert "Traceback" not in res.output


def test_bad_choice_exit_2(write):
    res = run("data", "inspect", write("t.csv", "a\n"), "--orf", "nope")
    assert res.exit_code == 2


def test_debug_shows_traceback(write):
    path = write("t.csv", "")
    proc = subprocess.run([sys.executable, "-m", "biofuse.cli", "--debug", "data", "inspect",
                           str(path)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize("args", [["--debug"], []])
def test_console_script_installed(args):
    # the script installed beside this interpreter: works without an activated virtualenv
    script = Path(sys.executable).parent / "biofuse"
    proc = subprocess.run([str(script), *args, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
