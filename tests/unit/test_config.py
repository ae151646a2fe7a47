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
        ("[oidc]\nissuer = 'https://id.example.net'\n", "oidc.client_id: required"),
        ("[oidc]\nissuer = 'id.example.net'\nclient_id = 'f'\n", "expected an http(s)://"),
        (
            "[oidc]\nissuer = 'https://i.example'\nclient_id = 'f'\nscopes = ['email']\n",
            "must include 'openid'",
        ),
        (
            "[oidc]\nissuer = 'https://i.example'\nclient_id = 'f'\nadmin_claim = 'groups'\n",
            "set both admin_claim and admin_values",
        ),
        (
            "[oidc]\nissuer = 'https://i.example'\nclient_id = 'f'\napi_audience = 'f'\n",
            "must differ from oidc.client_id",
        ),
        (
            "[oidc]\nissuer = 'https://i.example'\nclient_id = 'f'\nclient_secret = 'a'\n"
            "client_secret_file = '/run/s'\n",
            "not both",
        ),
        ("[oidc]\nclock_skew_seconds = 900\n", "between 0 and 300"),
        ("[personal_data.invoices]\nurl = 'x'\n", "unknown section(s): invoices"),
        ("[personal_data.usage]\nurl = 'postgresql://h/d'\n", "needs both url and query"),
        ("[personal_data.usage]\nport = 5432\n", "personal_data.usage]: unknown key(s): port"),
        ("[personal_data.usage]\ncolumns = ['a']\n", "expected a table of strings"),
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


def test_oidc_and_personal_data_sections(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[oidc]\nissuer = 'https://id.example.net'\nclient_id = 'ferry'\n"
        "admin_claim = 'groups'\nadmin_values = ['ferry-admins']\n"
        "[personal_data.billing]\nurl = 'postgresql+psycopg://ro@db/billing'\n"
        "query = 'SELECT * FROM invoices WHERE account_email = :email'\n"
        "columns = { invoice_number = 'inv_no' }\n"
    )
    config = load_config(
        path,
        env={
            "FERRY_OIDC_CLIENT_SECRET": "hunter2",
            "FERRY_OIDC_AUTO_CREATE_USERS": "true",
            "FERRY_PERSONAL_DATA_BILLING_URL": "postgresql+psycopg://ro:pw@db2/billing",
        },
    )
    assert config.oidc.enabled and config.oidc.auto_create_users
    assert config.oidc.admin_values == ("ferry-admins",)
    assert config.oidc.scopes == ("openid", "email", "profile")
    billing = config.personal_data_source("billing")
    assert billing.kind == "sql" and str(billing.url).endswith("@db2/billing")
    assert billing.columns == (("invoice_number", "inv_no"),)
    assert config.personal_data_source("usage").kind == "ferry"
    assert "hunter2" not in repr(config) and "pw@" not in repr(config)


def test_sigv2_is_on_by_default_and_can_be_turned_off() -> None:
    assert Config().gateway.sigv2 is True
    off = load_config(None, env={"FERRY_GATEWAY_SIGV2": "false"})
    assert off.gateway.sigv2 is False
