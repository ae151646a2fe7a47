"""Options shared by the `ferry` command modules (`cli`, `cli_export`, `cli_transfer`)."""

from __future__ import annotations

import click

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="FERRY_CONFIG",
    default=None,
    help="TOML config file (default: built-in defaults; env FERRY_CONFIG).",
)
