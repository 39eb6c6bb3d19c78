"""dbward's keyring: created once (0600), the same keys on every load (dbward.keyring)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from dbward.errors import ConfigError
from dbward.keyring import KEY_NAMES, load_keyring
from dbward.masking.entities import Entity
from dbward.masking.strategies import Pseudonymizer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_load_creates_a_private_file(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"
    keyring = load_keyring(state)
    path = state / "keyring.json"
    assert path.is_file()
    assert mode(path) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert set(data["keys"]) == set(KEY_NAMES) == set(keyring.keys)
    for name in KEY_NAMES:
        assert base64.b64decode(data["keys"][name]) == keyring.key(name)
        assert len(keyring.key(name)) == 32


def test_the_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_keyring(tmp_path)
    finally:
        os.umask(old)
    assert mode(tmp_path / "keyring.json") == 0o600


def test_keys_are_stable_across_loads(tmp_path: Path) -> None:
    first = load_keyring(tmp_path)
    second = load_keyring(tmp_path)
    assert first.keys == second.keys
    token = Pseudonymizer(first.key("pseudonym")).token(Entity.EMAIL, "a@b.io")
    assert Pseudonymizer(second.key("pseudonym")).token(Entity.EMAIL, "a@b.io") == token


def test_two_state_directories_have_different_keys(tmp_path: Path) -> None:
    assert load_keyring(tmp_path / "a").keys != load_keyring(tmp_path / "b").keys


def test_the_repr_never_shows_a_key(tmp_path: Path) -> None:
    keyring = load_keyring(tmp_path)
    key = keyring.key("pseudonym")
    shown = repr(keyring) + str(keyring)
    assert "pseudonym" in shown
    assert key.hex() not in shown
    assert base64.b64encode(key).decode() not in shown
    assert repr(key) not in shown


def test_a_key_missing_from_an_older_file_is_added_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(
        json.dumps({"version": 1, "keys": {"legacy": base64.b64encode(b"x" * 32).decode()}})
    )
    path.chmod(0o600)
    keyring = load_keyring(tmp_path)
    assert keyring.key("legacy") == b"x" * 32
    assert set(KEY_NAMES) <= set(keyring.keys)
    rewritten = json.loads(path.read_text())
    assert set(rewritten["keys"]) == {"legacy", *KEY_NAMES}
    assert mode(path) == 0o600
    assert not path.with_suffix(".tmp").exists()
    assert load_keyring(tmp_path).keys == keyring.keys


@pytest.mark.parametrize(
    "content",
    [
        b"not json at all",
        b"",
        b"[1, 2, 3]",
        b'{"version": 1}',
        b'{"version": 1, "keys": {"pseudonym": "***not base64***"}}',
        b'{"version": 1, "keys": {"pseudonym": 12}}',
        b"\xff\xfe\x00garbage",
        b'{"version": 1, "keys": ["pseudonym"]}',
        b'{"version": 1, "keys": null}',
    ],
)
def test_a_corrupt_keyring_is_a_config_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "keyring.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_keyring(tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "keyring" in message
    assert path.read_bytes() == content, "a corrupt keyring is never overwritten"


def test_a_corrupt_keyring_error_does_not_echo_its_content(tmp_path: Path) -> None:
    secret = base64.b64encode(b"s" * 32).decode()
    path = tmp_path / "keyring.json"
    path.write_text('{"version": 1, "keys": {"pseudonym": "' + secret + '", "x": "%%%"}}')
    with pytest.raises(ConfigError) as caught:
        load_keyring(tmp_path)
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
