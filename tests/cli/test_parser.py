"""The command line itself: every option documented with its default, any argument order, one-line errors."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import pytest

from packvault.cli.main import build_parser


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))


def _commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return [(path, parser) for path, parser in _walk(build_parser()) if path]


def test_the_tree_has_every_command() -> None:
    names = {" ".join(path) for path, _ in _commands()}
    assert {"init", "create", "list", "extract", "info", "diff", "delete", "undelete", "prune", "compact"} <= names
    assert {"check", "break-lock", "key", "key export", "key import", "key change-passphrase"} <= names


@pytest.mark.parametrize(("path", "parser"), _commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_subcommand_has_a_description(path, parser) -> None:
    assert parser.description and len(parser.description) > 10, f"packvault {' '.join(path)} has no description"
    # compared without whitespace: the help formatter re-wraps the text, also at hyphens
    assert "".join(parser.description.split()) in "".join(parser.format_help().split())


@pytest.mark.parametrize(
    ("path", "parser"), list(_walk(build_parser())), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_option_has_help_and_shows_its_default(path, parser) -> None:
    rendered = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction):
            continue
        name = "/".join(action.option_strings) or action.metavar or action.dest
        assert action.help, f"packvault {' '.join(path)}: {name} has no help text"
        default = action.default
        if action.option_strings and default not in (None, False, argparse.SUPPRESS, "", []):
            assert f"default: {default}" in rendered, f"packvault {' '.join(path)}: {name} does not show {default!r}"


def test_prune_help_explains_the_default_grouping() -> None:
    prune = dict(_commands())[("prune",)]
    text = " ".join(prune.format_help().split())
    assert "default: host,paths" in text
    assert "host and backed-up paths" in text


def test_compact_help_shows_min_age_default() -> None:
    compact = dict(_commands())[("compact",)]
    assert "default: 2h" in " ".join(compact.format_help().split())


def test_exit_codes_are_in_the_help() -> None:
    text = " ".join(build_parser().format_help().split())
    for code in ("0 done", "1 done with warnings", "2 not done", "3 a time-boxed", "130 interrupted", "143"):
        assert code in text


# --- parsing ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_repo(pv, tmp_path):
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.txt").write_text("a")
    (src / "other.txt").write_text("b")
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::one", src)
    return repo, src


def test_options_after_positional_arguments(pv, tmp_path, small_repo) -> None:
    repo, src = small_repo
    wanted = str(src / "keep").lstrip("/")
    # README's own order: options between the archive and the paths
    pv("extract", f"{repo}::one", "--target", tmp_path / "out", wanted)
    restored = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert restored == {f"{wanted}/a.txt"}
    lines = pv("list", f"{repo}::one", "--json-lines", wanted).out.splitlines()
    assert [json.loads(line)["path"] for line in lines] == [wanted, f"{wanted}/a.txt"]
    # and options before the repository, mixed with the command's own
    assert "one" in pv("list", "--json", repo).out


def test_verbose_after_the_subcommand(pv, small_repo) -> None:
    repo, _ = small_repo
    assert pv("list", repo, "-v").rc == 0
    assert pv("-v", "list", repo).rc == 0
    assert pv("key", "export", "-v", repo).rc == 0


def test_usage_errors_print_one_line(capsys) -> None:
    from packvault.cli.main import main

    for argv, message in (
        (["lst"], "unknown command 'lst'"),
        (["list", "--bogus"], "unrecognized arguments: --bogus"),
        (["prune", "--keep-last", "two"], "invalid int value"),
        (["key"], "no KEYCOMMAND given"),
        (["init", "--cipher", "rot13"], "invalid choice"),
        (["create"], "required"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2
        assert err.count("\n") == 1 and err.startswith("packvault: error: ") and message in err, err
        assert "--help" in err
