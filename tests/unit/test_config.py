from __future__ import annotations

from pathlib import Path

import pytest

from ferry.config import Config, ConfigError, Secret, load_config


def test_no_file_gives_the_embedded_default() -> None:
    config = load_config(None, env={})
    assert config == Config()
    assert config.database.url == "sqlite+aiosqlite:///var/ferry.db"
    assert config.storage.backend == "local"
    assert config.gateway.listen == "127.0.0.1:9000"


def test_example_file_loads_and_matches_the_defaults() -> None:
    example = Path(__file__).parents[2] / "config.example.toml"
    assert load_config(example, env={}) == Config()


def test_env_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[database]\nurl = "sqlite+aiosqlite:///x.db"\n[gateway]\nlisten = "0.0.0.0:9"\n'
    )
    config = load_config(
        path,
        env={
            "FERRY_DATABASE_URL": "postgresql+psycopg://u@h/d",
            "FERRY_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1/32",
            "FERRY_STORAGE_SECRET_ACCESS_KEY": "hunter2",
        },
    )
    assert config.database.url == "postgresql+psycopg://u@h/d"
    assert config.gateway.listen == "0.0.0.0:9"
    assert config.gateway.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    assert isinstance(config.storage.secret_access_key, Secret)
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[database\nurl=1", "not valid TOML"),
        ("[nope]\nx = 1\n", "unknown config section"),
        ("[storage]\nbackend = 'ftp'\n", "unknown backend 'ftp'"),
        ("[storage]\nbackend = 's3'\nendpoint_url = 'not a url'\n", "expected an http(s):// URL"),
        ("[storage]\nbackend = 's3'\nendpoint_url = 'http://h:99999'\n", "malformed URL"),
        ("[gateway]\nlisten = 'nowhere'\n", "expected host:port"),
        ("[gateway]\ntrusted_proxies = ['10.0.0.0/33']\n", "trusted_proxies"),
        ("[gateway]\ntls_cert_file = 'c.pem'\n", "both tls_cert_file and tls_key_file"),
        ("[api]\nlisten = 8000\n", "expected a string"),
        ("[database]\nport = '1'\n", "unknown key(s): port"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path, env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/ferry.toml", env={})


def test_sigv2_is_on_by_default_and_can_be_turned_off() -> None:
    assert Config().gateway.sigv2 is True
    off = load_config(None, env={"FERRY_GATEWAY_SIGV2": "false"})
    assert off.gateway.sigv2 is False
