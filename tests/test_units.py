"""The one size and duration grammar (packvault.units) and the options that use it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from packvault.errors import UsageError
from packvault.units import parse_duration, parse_size

MONTH = timedelta(days=31)
YEAR = timedelta(days=366)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30min", timedelta(minutes=30)),
        ("30MIN", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("36H", timedelta(hours=36)),
        ("2d", timedelta(days=2)),
        ("2D", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("2m", 2 * MONTH),  # months, everywhere
        ("6m", 6 * MONTH),
        ("1y", YEAR),
        ("1Y", YEAR),
        ("1d12H", timedelta(hours=36)),
        ("1h30min", timedelta(minutes=90)),
        ("1y2m", YEAR + 2 * MONTH),
        (" 3d ", timedelta(days=3)),
        ("0d1H", timedelta(hours=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("soon", "invalid duration 'soon'"),
        ("2", "a unit is missing"),
        ("d", "invalid duration"),
        ("-2d", "invalid duration"),
        ("2.5d", "invalid duration"),
        ("2 d", "invalid duration"),
        ("0d", "longer than zero"),
        ("0", "a unit is missing"),
        ("2M", "ambiguous"),
        ("5x", "unknown unit 'x'"),
        ("5mins", "unknown unit 'mins'"),
        ("99999999999999y", "too long"),
    ],
)
def test_bad_durations_are_one_line_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_duration(text)
    line = info.value.one_line()
    assert "\n" not in line and "min" in line and "m (months)" in line


def test_zero_only_where_allowed() -> None:
    assert parse_duration("0", allow_zero=True) == timedelta(0)
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    assert parse_duration("0h0m", allow_zero=True) == timedelta(0)
    with pytest.raises(UsageError, match="unit is missing"):
        parse_duration("7", allow_zero=True)


def test_error_names_the_option() -> None:
    with pytest.raises(UsageError, match="invalid --min-age 'soon'"):
        parse_duration("soon", what="--min-age")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1 << 20),
        ("512", 512),
        ("512B", 512),
        ("512K", 512 << 10),
        ("512k", 512 << 10),
        ("512KB", 512 << 10),
        ("512KiB", 512 << 10),
        ("32M", 32 << 20),
        ("100MiB", 100 << 20),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
        ("1gb", 1 << 30),
        ("2T", 2 << 40),
        ("1.5G", 3 << 29),
        ("0.5K", 512),
        (" 64 K ", 64 << 10),
        ("9007199254740993", 9007199254740993),  # beyond float precision: exact
        ("8192.5T", 8192 * (1 << 40) + (1 << 39)),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "M", "-1M", "1X", "1MM", "1e6", "1.G", "1,5G", "0x10"])
def test_bad_sizes_are_one_line_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size") as info:
        parse_size(text)
    assert "\n" not in info.value.one_line() and "512K" in info.value.one_line()


# --- the options that use the grammar ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["soon", "2", "2M", "5mins"])
def test_compact_min_age_bad_values_are_one_line(pv, tmp_path, value) -> None:
    repo = tmp_path / "repo"
    pv("init", repo)
    result = pv("compact", repo, "--min-age", value, expect=2)
    assert result.err.startswith("packvault: error: invalid --min-age")
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_compact_min_age_2m_means_two_months(pv, tmp_path) -> None:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    pv("delete", f"{repo}::a")
    import json

    report = json.loads(pv("compact", repo, "--min-age", "2m", "--json").out)["compact"]
    assert report["packs_too_young"] == report["packs_total"] > 0
    assert report["min_age_seconds"] == 62 * 86400


def test_prune_keep_within_uses_the_same_grammar(pv, tmp_path) -> None:
    repo = tmp_path / "repo"
    pv("init", repo)
    result = pv("prune", repo, "--keep-within", "90min", "--dry-run")
    assert "0 of 0" in result.out
    result = pv("prune", repo, "--keep-within", "2M", expect=2)
    assert "ambiguous" in result.err and len(result.err.strip().splitlines()) == 1


def test_init_pack_size_uses_the_size_grammar(pv, tmp_path) -> None:
    result = pv("init", tmp_path / "r1", "--pack-size", "lots", expect=2)
    assert result.err.startswith("packvault: error: invalid --pack-size 'lots'")
    pv("init", tmp_path / "r2", "--pack-size", "1.5M")
    import json

    info = json.loads(pv("info", tmp_path / "r2", "--json").out)["repository"]
    assert info["pack_size"] == 3 << 19
