"""Every command of both CLIs answers --help with usage and examples, and bad usage exits non-zero."""

import pytest

from data_prep.cli import COMMANDS as PREP_MODULES
from data_prep.cli import main as prep_main
from hiclr.cli import main as hiclr_main

HICLR_COMMANDS = [
    "pretrain",
    "embed",
    "linear",
    "knn",
    "semi",
    "finetune",
    "ensemble",
    "report",
    "demo",
    "bench",
    "sweep",
]
PREP_COMMANDS = ["ntu60", "ntu120", "pkummd", "import", "synth", "info", "verify"]


@pytest.mark.parametrize(
    "command", [[]] + [[c] for c in HICLR_COMMANDS] + [["bench", b] for b in ("prep", "aug", "train", "linear")]
)
def test_every_hiclr_command_prints_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        hiclr_main(command + ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hiclr")


@pytest.mark.parametrize("command", [[]] + [[c] for c in PREP_COMMANDS])
def test_every_prep_command_prints_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        prep_main(command + ["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: hiclr-prep")


def test_top_level_help_lists_examples(capsys):
    with pytest.raises(SystemExit):
        hiclr_main(["--help"])
    assert "examples:" in capsys.readouterr().out
    assert len(PREP_MODULES) == 5


def test_unknown_command_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        hiclr_main(["no-such-command"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_sigterm_that_a_library_swallows_during_the_imports_still_ends_the_command(tmp_path, monkeypatch, capsys):
    import signal
    import textwrap

    from hiclr.common.command_line import run_cli

    (tmp_path / "swallowing").mkdir()
    (tmp_path / "swallowing" / "__init__.py").write_text("")
    (tmp_path / "swallowing" / "cmd.py").write_text(
        textwrap.dedent("""
        import os, signal
        RAN = []

        def register(sub):
            try:                      # as an extension's import that catches every error would
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(10))        # the handler runs here, between bytecodes
            except BaseException:
                pass
            sub.add_parser("go").set_defaults(func=lambda args: RAN.append(1) or 0)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = signal.getsignal(signal.SIGTERM)
    assert run_cli("tool", "doc", "swallowing", ["cmd"], "", ["go"]) == 143
    import swallowing.cmd

    assert swallowing.cmd.RAN == []  # the command itself never started
    assert capsys.readouterr().err.strip().splitlines() == [
        "tool: terminated (SIGTERM); no half-written file is left under its final name"
    ]
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored
    from hiclr.common.command_line import sigterm_received

    assert sigterm_received() is False  # and the next command starts afresh
