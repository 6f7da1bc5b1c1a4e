"""Hostile inputs (issue 22): lock bodies in the store that satchunk did not write, a
``--config`` file built to blow up, and ONNX sidecars of the wrong shape. Each is
either taken as what it safely is (a broken lock: expired) or refused in one short
line, exit 2, before any work; never a traceback, never stuck for ever."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import yaml
from joboutput import error_lines

from chunkstore import LockedError, output_lock
from chunkstore._layout import lock_key
from chunkstore._lock import MAX_TTL_S
from models import ModelSpec
from satchunk.cli import main

KEY = "masks/c/item/m-1.zarr"


# locks -------------------------------------------------------------------------------

def _held(s3_store, body):
    """Hold the lock of KEY over a lock object whose body is ``body`` (bytes or JSON)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    s3_store.write_bytes(lock_key(KEY), raw)
    with output_lock(s3_store, KEY, "mask") as lock:
        held = json.loads(s3_store.read_bytes(lock_key(KEY)))
        assert held["owner"] == lock.body["owner"]  # ours now
    assert not s3_store.exists(lock_key(KEY))  # and released


@pytest.mark.parametrize("body", [
    b"[]",
    b'"a lock"',
    {"owner": "x", "host": "elsewhere", "pid": 1, "heartbeat": "2026-01-01T00:00:00Z",
     "ttl_s": 120},
    {"owner": "x", "heartbeat": None},
    {"owner": "x", "heartbeat": [1, 2]},
    {"owner": "x", "host": "elsewhere", "heartbeat": 10**400},
    {"owner": "x", "host": "elsewhere", "heartbeat": 1.0, "ttl_s": "forever"},
    b"[" * 100_000,  # valid JSON's start, nested past Python's recursion limit
], ids=["array", "string", "date-heartbeat", "null-heartbeat", "list-heartbeat",
        "huge-int-heartbeat", "text-ttl", "deep-nesting"])
def test_a_malformed_lock_body_is_taken_as_expired(s3_store, body):
    _held(s3_store, body)


def test_a_heartbeat_far_in_the_future_is_not_trusted(s3_store):
    _held(s3_store, {"owner": "x", "host": "elsewhere", "pid": 1, "since": "2026-01-01",
                     "heartbeat": time.time() + 10**7, "ttl_s": 120})


def test_a_huge_ttl_counts_as_the_longest_satchunk_writes(s3_store):
    _held(s3_store, {"owner": "x", "host": "elsewhere", "pid": 1, "since": "2026-01-01",
                     "heartbeat": time.time() - MAX_TTL_S - 5, "ttl_s": 1e12})


def test_a_live_lock_is_refused_in_one_short_line_that_says_when_it_expires(s3_store):
    s3_store.write_bytes(lock_key(KEY), json.dumps(
        {"owner": "x", "host": "h" * 10_000 + "\nsecond line", "pid": [0] * 1000,
         "since": "s" * 10_000, "heartbeat": time.time() - 10, "ttl_s": 1e12}).encode())
    with pytest.raises(LockedError) as info:
        with output_lock(s3_store, KEY, "mask"):
            pass
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert s3_store.url(lock_key(KEY)) in msg  # names the lock
    wait = int(re.search(r"re-run after (\d+) s", msg).group(1))
    assert 100 <= wait <= MAX_TTL_S  # ~110 s left of the clamped ttl, not 1e12
    assert json.loads(s3_store.read_bytes(lock_key(KEY)))["owner"] == "x"  # left alone


def test_a_heartbeat_within_clock_skew_or_a_bad_pid_here_still_holds(s3_store):
    for body in ({"owner": "x", "host": "elsewhere", "pid": 1,
                  "heartbeat": time.time() + 10, "ttl_s": 120},  # a clock 10 s ahead
                 {"owner": "x", "host": socket.gethostname(), "pid": "not a pid",
                  "heartbeat": time.time(), "ttl_s": 120}):
        s3_store.write_bytes(lock_key(KEY), json.dumps(body).encode())
        with pytest.raises(LockedError, match="being written by another job"):
            with output_lock(s3_store, KEY, "mask"):
                pass


def test_a_lock_ttl_beyond_the_maximum_is_refused(s3_store):
    with pytest.raises(ValueError, match="ttl"):
        with output_lock(s3_store, KEY, "mask", ttl=MAX_TTL_S * 10):
            pass
    assert not s3_store.exists(lock_key(KEY))


# --config ----------------------------------------------------------------------------

@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def _refused(capsys, argv, *needles):
    code = main(argv)
    lines = error_lines(capsys.readouterr().err)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert len(lines[0]) < 400, lines[0][:500]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _bomb(levels):
    """``collection:`` as nested aliases: 9 ** levels names from a few hundred bytes."""
    text = "&l0 [x, x, x, x, x, x, x, x, x]"
    for i in range(1, levels):
        text = f"&l{i} [{text}, " + ", ".join([f"*l{i - 1}"] * 8) + "]"
    return f"collection: {text}\n"


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(capsys, cli_env, tmp_path,
                                                          monkeypatch):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb(6))  # 9**6 names once expanded
    assert len(bomb.read_bytes()) < 500

    def built(*_a, **_k):
        raise AssertionError("the YAML was built: aliases were not refused first")

    monkeypatch.setattr(yaml.SafeLoader, "construct_document", built)
    _refused(capsys, ["train", "--config", str(bomb)], "bomb.yaml", "line 1", "aliases",
             "refused")


def test_an_options_file_over_a_megabyte_is_refused_unread(capsys, cli_env, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("epochs: 3\n" + "# padding\n" * 110_000)
    _refused(capsys, ["train", "--config", str(big)], "big.yaml", "larger than 1 MB")


def test_an_options_file_nested_too_deeply_is_refused(capsys, cli_env, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("bands: " + "[" * 5000 + "]" * 5000 + "\n")
    _refused(capsys, ["train", "--config", str(deep)], "deep.yaml", "nested deeper")


@pytest.mark.parametrize("text, needle", [
    ("epochs: [" + ", ".join(["1"] * 5000) + "]\n", "epochs: [1, 1, 1, 1, ...]"),
    ("epochs: \"" + "z" * 50_000 + "\\nline two\"\n", "epochs: 'zzz"),
    ("seed: {a: 1, b: 2, c: 3, d: 4, e: 5}\n", "seed: {"),
    ("k" * 1000 + ": 1\n", "is not an option"),
    ("epochs: " + "9" * 5000 + "\n", "cannot be read"),
], ids=["long-list", "long-string", "mapping", "long-key", "huge-int"])
def test_a_wrong_value_is_echoed_cut_short(capsys, cli_env, tmp_path, text, needle):
    f = tmp_path / "run.yaml"
    f.write_text(text)
    _refused(capsys, ["train", "--config", str(f)], "run.yaml", needle)


# ONNX sidecars -------------------------------------------------------------------------

SIDECAR = {"name": "m", "version": "1", "bands": ["red", "nir"], "classes": ["land", "water"],
           "colors": ["#33a02c", "#1f78b4"], "tile": 64, "halo": 8, "mean": [0.1, 0.1],
           "std": [0.05, 0.05], "output": "logits"}


@pytest.mark.parametrize("change, needles", [
    ({"mean": ["x", 0.1]}, ("'mean'", "'x'", "finite number")),
    ({"std": [0.05, float("nan")]}, ("'std'", "finite number")),
    ({"halo": 8.5}, ("'halo'", "8.5", "integer")),
    ({"tile": "64"}, ("'tile'", "integer")),
    ({"classes": "ab"}, ("'classes'", "'ab'", "list of strings")),
    ({"bands": ["red", 7]}, ("'bands'", "7", "string")),
    ({"colors": ["red", "#1f78b4"]}, ("colour 'red'", "#rrggbb")),
    ({"colors": ["#33a02c", "#1f78b4\n" + "x" * 5000]}, ("colour", "#rrggbb")),
    ({"output": ["logits"] * 10_000}, ("'output'", "'logits' or 'probabilities'")),
    ({"name": "n" * 5000}, ("model name", "letters, digits")),
    ({"version": 2}, ("'version'", "string")),
    ({"extra": 1}, ("unknown fields", "extra")),
], ids=["mean-text", "std-nan", "halo-float", "tile-text", "classes-string", "band-number",
        "colour-name", "colour-long", "output-list", "name-long", "version-number", "extra"])
def test_a_sidecar_field_of_the_wrong_type_is_named(capsys, cli_env, tmp_path, change,
                                                    needles):
    (tmp_path / "m.onnx").write_bytes(b"not loaded: the sidecar is checked first")
    (tmp_path / "m.json").write_text(json.dumps(SIDECAR | change))
    line = _refused(capsys, ["predict", "some_item", "--model", f"onnx:{tmp_path / 'm.onnx'}"],
                    "sidecar", "m.json", *needles)
    assert "cannot load ONNX model" not in line


@pytest.mark.parametrize("raw, needle", [
    (b'[{"name": "m"}]', "holds a JSON array"),
    (b'"m"', "holds a JSON string"),
    (b"[" * 100_000, "not valid JSON"),
    (b"{" + b" " * (2 << 20) + b"}", "larger than 1 MB"),
], ids=["array", "string", "deep", "huge"])
def test_a_sidecar_that_is_not_an_object_is_refused(capsys, cli_env, tmp_path, raw, needle):
    (tmp_path / "m.onnx").write_bytes(b"not loaded")
    (tmp_path / "m.json").write_bytes(raw)
    _refused(capsys, ["predict", "some_item", "--model", f"onnx:{tmp_path / 'm.onnx'}"],
             "sidecar", "m.json", needle)


def test_a_valid_spec_round_trips_with_colours_with_or_without_hash():
    spec = ModelSpec.from_dict({k: v for k, v in SIDECAR.items() if k != "output"}
                               | {"colors": ["33a02c", "#1F78B4"]})
    assert spec.colors == ("33a02c", "#1F78B4") and spec.halo == 8 and spec.mean == (0.1, 0.1)
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_a_colour_that_is_not_a_colour_is_refused_when_the_spec_is_made():
    from models import ModelError

    with pytest.raises(ModelError, match=r"colour 'red' is not a colour: write '#rrggbb'"):
        ModelSpec(name="m", version="1", bands=("red",), classes=("a", "b"),
                  colors=("red", "#00ff00"))
