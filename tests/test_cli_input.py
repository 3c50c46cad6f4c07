"""Issue 27, input: every numeric option is refused at parse time, with argparse's one-line error naming the option,
the value and the range, before any folder is made; every option has help; --protocol lists its choices."""

import argparse

import numpy as np
import pytest

from ridrepro.cli import COMMANDS, main, parser_for

RUN = ["--protocol", "smoke", "--synthetic"]
BAD = [  # (argv without --runs, the option argparse names)
    (["distil", *RUN, "--method", "bas", "--seed", "-1"], "--seed"),
    (["distil", *RUN, "--method", "bas", "--seed", "99999999999999999999"], "--seed"),
    (["distil", *RUN, "--method", "bas", "--seed", "2147483648"], "--seed"),
    (["distil", *RUN, "--method", "vid", "--teacher", "ut", "--teacher-seed", "-1"], "--teacher-seed"),
    (["distil", *RUN, "--method", "bas", "--threads", "-2"], "--threads"),
    (["distil", *RUN, "--method", "bas", "--threads", "0"], "--threads"),
    (["teacher", *RUN, "--kind", "ut", "--seed", "-5"], "--seed"),
    (["teacher", *RUN, "--kind", "ut", "--device", "gpu0"], "--device"),
    (["grid", *RUN, "--seeds", "0", "-3"], "--seeds"),
    (["grid", *RUN, "--jobs", "-1"], "--jobs"),
    (["grid", *RUN, "--jobs", "0"], "--jobs"),
    (["grid", *RUN, "--jobs", "two"], "--jobs"),
    (["grid", *RUN, "--backend", "ray", "--gpus-per-cell", "-1"], "--gpus-per-cell"),
    (["grid", *RUN, "--backend", "ray", "--cpus-per-cell", "0"], "--cpus-per-cell"),
    (["pid", "features", "t.npy", "s.npy", "y.npy", "--bootstrap", "-1"], "--bootstrap"),
    (["pid", "features", "t.npy", "s.npy", "y.npy", "--null", "-1"], "--null"),
    (["pid", "features", "t.npy", "s.npy", "y.npy", "--pca", "0"], "--pca"),
    (["pid", "features", "t.npy", "s.npy", "y.npy", "--clusters", "0"], "--clusters"),
    (["pid", "features", "t.npy", "s.npy", "y.npy", "--seed", "-1"], "--seed"),
    (["probes", "--protocol", "smoke", "--out", "o", "--images", "0"], "--images"),
    (["probes", "--protocol", "smoke", "--out", "o", "--threads", "0"], "--threads"),
    (["probes", "--protocol", "smoke", "--out", "o", "--seeds", "-1"], "--seeds"),
    (["probes", "--protocol", "smoke", "--out", "o", "--eps", "nan"], "--eps"),
    (["rdm-curves", "--protocol", "smoke", "--out", "o", "--rates", "1", "0"], "--rates"),
    (["sensitivity", "--protocol", "smoke", "--out", "o", "--null", "-1"], "--null"),
    (["sensitivity", "--protocol", "smoke", "--out", "o", "--clustering-seeds", "0"], "--clustering-seeds"),
    (["data", "--per-class", "0", "10"], "--per-class"),
    (["intervals", "--protocol", "smoke", "--clustering-seeds", "5"], "--clustering-seeds"),
    (["intervals", "--protocol", "smoke", "--bootstrap", "50"], "--bootstrap"),
]


@pytest.mark.parametrize("argv,option", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_a_bad_number_is_refused_before_anything_is_made(argv, option, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --runs (./runs), the outputs and the data cache would land here
    runs = tmp_path / "runs"
    runs.mkdir()
    if argv[0] in ("distil", "teacher", "grid", "probes", "rdm-curves", "sensitivity"):
        argv = [*argv, "--runs", str(runs)]
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"ridrepro {argv[0]}") and f"argument {option}" in err and "invalid value" in err, err
    assert any(word in err for word in (">=", ">", "<", "not an integer", "not a finite", "choose")), err  # the range
    assert list(runs.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_duplicate_seeds_are_merged_with_a_note(capsys):
    args = parser_for("grid").parse_args(["grid", *RUN, "--seeds", "1", "1", "0", "1"])
    assert args.seeds == [1, 0]
    assert "--seeds 1 1 0 1: duplicates merged, seeds 1 0" in capsys.readouterr().err


def subcommand_parsers():
    for name in COMMANDS:
        sub = next(a for a in parser_for(name)._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        yield from ((f"{name} {n}", p) for n, p in nested[0].choices.items()) if nested else [(name, parser)]


@pytest.mark.parametrize("name,parser", list(subcommand_parsers()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_has_help_and_protocol_lists_its_choices(name, parser):
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"ridrepro {name} {action.option_strings or action.dest}: no help text"
        if "--protocol" in action.option_strings:
            assert action.choices and "smoke" in action.choices
    assert "--protocol {" in parser.format_help() or "--protocol" not in parser.format_help()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("ridrepro ")


def test_pid_table_refuses_text_and_complex_arrays(tmp_path, capsys):
    text = tmp_path / "table.txt"
    text.write_text("0.25 0.25\n0.25 0.25\n")
    assert main(["pid", "table", str(text)]) == 2
    err = capsys.readouterr().err
    assert "is not a plain numpy .npy array of numbers (write one with numpy.save)" in err and "pickle" not in err
    complex_table = tmp_path / "complex.npy"
    np.save(complex_table, np.full((2, 2, 2), 1 / 8, dtype=complex))
    assert main(["pid", "table", str(complex_table)]) == 2
    assert "holds complex128 values; real numbers are needed" in capsys.readouterr().err
