"""Field helpers and constants the handler modules share: lifecycle stages, run names, tags, ids."""

from __future__ import annotations

import random
import time
from typing import Any

from ingest import validation as v
from ingest.errors import invalid

ACTIVE, DELETED = "active", "deleted"
RUN_NAME_TAG = "mlflow.runName"
DEFAULT_EXPERIMENT_ID = "0"
VIEW_TYPES = {"ACTIVE_ONLY": (ACTIVE,), "DELETED_ONLY": (DELETED,), "ALL": (ACTIVE, DELETED)}


def now_ms() -> int:
    return int(time.time() * 1000)


_ADJECTIVES = ("able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "gentle",
               "glad", "grand", "keen", "kind", "lively", "merry", "neat", "proud", "quick", "sharp",
               "shy", "silent", "sleek", "smart", "swift", "tidy", "vivid", "warm", "wise", "zealous")  # fmt: skip
_NOUNS = ("ant", "bass", "bat", "bear", "bee", "cat", "colt", "crab", "crow", "deer", "doe", "duck",
          "eel", "elk", "finch", "fox", "frog", "goat", "gull", "hare", "hawk", "hen", "jay", "lamb",
          "lark", "mole", "moth", "owl", "ox", "ram", "seal", "shrew", "slug", "snail", "swan", "toad",
          "wasp", "whale", "wolf", "worm", "yak")  # fmt: skip


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(0, 999)}"


def run_id(p: dict[str, Any]) -> str:
    """The run a request names: ``run_id``, or the older ``run_uuid``."""
    given = p.get("run_id") or p.get("run_uuid")
    if not given:
        v.required(p, "run_id")
    return str(given)


def str_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(x) for x in value] if isinstance(value, list) else [str(value)]


def tag(t: dict[str, Any], max_value: int) -> dict[str, Any]:
    """A run or experiment tag as events carry it, validated by MLflow's rules."""
    return {"key": v.key_name("tag", t.get("key")), "value": v.tag_value(t.get("value"), max_value), "deleted": False}


def by_key(t: dict[str, Any]) -> str:
    return str(t["key"])


def int_or(value: Any, default: int | None) -> Any:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value} for an int64 parameter") from None
