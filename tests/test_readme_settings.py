"""The README's settings table is the settings: every field has its row, with its default."""

from __future__ import annotations

import re
from pathlib import Path

from lambda_destinations.config import Settings

README = Path(__file__).parents[1] / "README.md"
# Set by ECS itself, without our prefix: the table names it in the task_protection row.
UNPREFIXED = {"ecs_agent_uri": "ECS_AGENT_URI"}


def settings_table() -> dict[str, str]:
    """Setting name -> its default as the README's Configuration table gives it."""
    text = README.read_text(encoding="utf-8")
    table = text.split("### Configuration", 1)[1].split("Invalid configuration stops", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)`", cells[0])
        # "5, 900" for two settings; "8080; `run` 0.0.0.0, `dev` 127.0.0.1" when a default has words
        defaults = [part.strip() for part in cells[2].split(";" if ";" in cells[2] else ",")]
        for n, name in enumerate(names):
            rows[name] = defaults[n] if len(defaults) == len(names) else cells[2]
    return rows


def test_every_setting_has_a_row_and_every_row_is_a_setting() -> None:
    rows = settings_table()
    table = README.read_text(encoding="utf-8").split("### Configuration", 1)[1]

    missing = set(Settings.model_fields) - set(rows) - set(UNPREFIXED)
    unknown = set(rows) - set(Settings.model_fields)

    assert not missing, f"settings without a row in the README's table: {sorted(missing)}"
    assert not unknown, f"rows of the README's table that are no setting: {sorted(unknown)}"
    for env in UNPREFIXED.values():
        assert env in table


def test_the_defaults_shown_are_the_settings_defaults() -> None:
    for name, shown in settings_table().items():
        default = Settings.model_fields[name].default
        if isinstance(default, str):
            assert shown.strip("`") == default, f"{name}: README says {shown}, config.py {default}"
        elif isinstance(default, int | float) and not isinstance(default, bool):
            assert float(shown) == default, f"{name}: README says {shown}, config.py {default}"
