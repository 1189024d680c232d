"""utils.cli: flags are the keyword names; booleans, lists, None and errors."""
import subprocess
import sys
from typing import Literal

import pytest

from utils.cli import build_parser, pick_alias, run_cli


def entry(data_dir: str | None = None,  # folder with the data
          num_epochs: int = 3,  # epochs of the run
          lr: float = 1e-4,
          class_cond: bool = False,  # class-conditional model
          ema_rate: str = "0.9999",
          sizes: list = [1, 2],  # noqa: B006 (a list default, as users write them)
          fail: bool = False):
    """Toy entry point.

    More text.
    """
    if fail:
        raise ValueError("data_dir: got None, expected a folder")
    return dict(data_dir=data_dir, num_epochs=num_epochs, lr=lr, class_cond=class_cond, ema_rate=ema_rate,
                sizes=sizes)


def test_flags_equal_keywords_and_defaults_are_kept():
    assert run_cli(entry, []) == entry()
    got = run_cli(entry, ["--num_epochs", "2", "--class_cond", "--ema_rate", "0.9999,0.99", "--sizes", "4,5",
                          "--data_dir", "x/"])
    assert got == dict(data_dir="x/", num_epochs=2, lr=1e-4, class_cond=True, ema_rate="0.9999,0.99", sizes=[4, 5])
    assert run_cli(entry, ["--no-class_cond", "--data_dir", "None"])["class_cond"] is False


def test_help_shows_comments_and_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser(entry).parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "Toy entry point." in text and "epochs of the run" in text and "--no-class_cond" in text
    assert "default: 3" in text


def test_bad_type_and_bad_value_exit_non_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(entry, ["--num_epochs", "two"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        run_cli(entry, ["--fail"])
    assert exit_info.value.code == 2
    assert "error: data_dir: got None" in capsys.readouterr().err


def test_cli_runs_as_a_subprocess(repo_root):
    code = "from tests.test_cli import entry; from utils.cli import run_cli; print(run_cli(entry, ['--lr', '0.5']))"
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert "'lr': 0.5" in out.stdout


def words(mode: str = "none",  # a word option whose default is the word 'none'
          limit: int | None = None):  # may be None
    return mode, limit


def test_none_word_is_none_only_where_none_is_allowed(capsys):
    assert run_cli(words, ["--mode", "none", "--limit", "none"]) == ("none", None)
    assert run_cli(words, []) == ("none", None)
    build_parser(words).print_help()
    assert "a word option whose default" in capsys.readouterr().out  # comment on the def line


def entry_more(name: str,  # a required keyword (its help text)
               norm_range: list[float] | None = None,  # a list of floats
               mode: Literal["none", "range"] = "none",  # a mode
               offset: float = 0.0,  # a number
               ):
    """Second toy entry point."""
    return dict(name=name, norm_range=norm_range, mode=mode, offset=offset)


def test_leading_minus_values_choices_and_required_help(capsys):
    got = run_cli(entry_more, ["--name", "x", "--norm_range", "-20,20", "--offset", "-0.5", "--mode", "range"])
    assert got == dict(name="x", norm_range=[-20.0, 20.0], mode="range", offset=-0.5)
    assert run_cli(entry_more, ["--norm_range", "-3,-1", "--name", "-a"])["norm_range"] == [-3.0, -1.0]
    with pytest.raises(SystemExit):
        run_cli(entry_more, ["--name", "x", "--mode", "minmax"])
    assert "invalid choice" in capsys.readouterr().err
    help_text = build_parser(entry_more).format_help()
    assert "a required keyword (its help text) (required)" in " ".join(help_text.split())
    assert "{none,range}" in help_text and "one of: none, range" in " ".join(help_text.split())


def test_pick_alias_takes_the_set_spelling_and_refuses_two_values():
    assert pick_alias("sample_class", 3, "sampled_class", None) == 3
    assert pick_alias("sample_class", None, "sampled_class", 2) == 2
    assert pick_alias("sample_class", 2, "sampled_class", 2) == 2
    with pytest.raises(ValueError, match="sample_class=1 and sampled_class=2"):
        pick_alias("sample_class", 1, "sampled_class", 2)


def guarded(out: str | None = None,  # output file (required)
            overwrite: bool = False):  # replace an existing output
    raise FileExistsError(f"{out} exists; pass overwrite=True to replace it (overwrite=False keeps it)")


def test_errors_spell_boolean_keywords_as_flags_and_required_help_states_no_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(guarded, ["--out", "x.npz"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: x.npz exists; pass --overwrite to replace it (--no-overwrite keeps it)"
    with pytest.raises(SystemExit):
        build_parser(guarded).parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "output file (required)" in out and "(required) (default" not in out
