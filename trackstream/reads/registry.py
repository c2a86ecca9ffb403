"""The model registry's read model: registered models and model versions as MLflow JSON dicts.

Rows come from the registry sink's tables (``schemas/clickhouse/registry.sql``), always through
``current()`` (the FINAL rule): ``name`` changes on rename and ``deleted`` on delete, so both are
filtered outside FINAL. JSON follows the stock server's protos: fields it leaves unset are absent
(a registered model without description, a version without run_id), empty lists are absent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trackstream.reads import search
from trackstream.reads.current import (
    MODEL_VERSION_TAGS,
    MODEL_VERSIONS,
    REGISTERED_MODEL_ALIASES,
    REGISTERED_MODEL_TAGS,
    REGISTERED_MODELS,
    Cond,
    cond,
    current,
)
from trackstream.tables import TableStore

MODEL_COLUMNS = ("model_id", "name", "creation_timestamp", "last_updated_timestamp", "description", "deployment_job_id")
VERSION_COLUMNS = (
    "model_id",
    "version",
    "name",
    "creation_timestamp",
    "last_updated_timestamp",
    "user_id",
    "current_stage",
    "description",
    "source",
    "storage_location",
    "run_id",
    "run_link",
    "logged_model_id",
    "status",
)
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
_LIVE = cond("deleted = 0", "deleted")
Ready = Callable[[], None] | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_offset: int | None


def _querying_prompts(clauses: list[search.Clause]) -> bool:
    """The stock store's rule: a filter on the prompt tag equal to 'true' (or unequal to 'false')
    searches prompts; any other search leaves them out."""
    for c in clauses:
        if c.entity == search.TAG and c.key == IS_PROMPT_TAG:
            value = str(c.value).lower()
            return (c.op == "=" and value == "true") or (c.op == "!=" and value == "false")
    return False


class RegistryReader:
    def __init__(self, tables: TableStore) -> None:
        self._t = tables

    # -- rows --
    def model_row(self, name: str) -> dict[str, Any] | None:
        """The live registered model called ``name`` (its internal ``model_id`` included)."""
        rows = self._models([cond("name = %(name)s", "name")], {"name": name})
        return rows[0] if rows else None

    def _models(self, where: Sequence[Cond], params: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        sql = current(REGISTERED_MODELS, MODEL_COLUMNS, [*where, _LIVE]) + tail
        return [dict(zip(MODEL_COLUMNS, r, strict=True)) for r in self._t.query(sql, params)]

    def _versions(self, where: Sequence[Cond], params: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        sql = current(MODEL_VERSIONS, VERSION_COLUMNS, [*where, _LIVE]) + tail
        return [dict(zip(VERSION_COLUMNS, r, strict=True)) for r in self._t.query(sql, params)]

    def version_row(self, name: str, version: int) -> dict[str, Any] | None:
        model = self.model_row(name)
        if model is None:
            return None
        rows = self._versions(
            [cond("model_id = %(id)s", "model_id"), cond("version = %(v)s", "version")],
            {"id": model["model_id"], "v": version},
        )
        return rows[0] if rows else None

    # -- entities --
    def registered_model(self, name: str) -> dict[str, Any] | None:
        model = self.model_row(name)
        return self._model_json([model])[0] if model is not None else None

    def model_version(self, name: str, version: int) -> dict[str, Any] | None:
        row = self.version_row(name, version)
        return self._version_json([row])[0] if row is not None else None

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` of model ``name`` points to (None: no such alias)."""
        model = self.model_row(name)
        if model is None:
            return None
        rows = self._t.query(
            current(
                REGISTERED_MODEL_ALIASES,
                "version",
                [cond("model_id = %(id)s", "model_id"), cond("alias = %(a)s", "alias"), _LIVE],
            ),
            {"id": model["model_id"], "a": alias},
        )
        return int(rows[0][0]) if rows else None

    def latest_versions(
        self, model_id: str, stages: Sequence[str] | None = None, aliases: bool = True
    ) -> list[dict[str, Any]]:
        """The newest live version of each stage (of ``stages`` if given), as the stock store lists them: stages
        in the order their first version appears. A registered model's ``latest_versions`` carry no aliases
        in the stock server's answers (``aliases=False``); get-latest-versions' do."""
        rows = self._versions([cond("model_id = %(id)s", "model_id")], {"id": model_id}, " ORDER BY version")
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            latest[row["current_stage"]] = row
        wanted = [row for stage, row in latest.items() if stages is None or stage in stages]
        return self._version_json(wanted, aliases)

    # -- searches --
    def search_registered_models(
        self, filter_string: str | None, order_by: list[str], offset: int, limit: int, ready: Ready = None
    ) -> Page:
        """Raises ``search.SearchError`` for an invalid filter or order_by (before ``ready`` waits)."""
        what, tags = search.REGISTERED_MODELS, (REGISTERED_MODEL_TAGS, "model_id")
        rows, next_offset = self._search(what, filter_string, order_by, tags, self._models, offset, limit, ready)
        return Page(self._model_json(rows, by_stage=True), next_offset)

    def search_model_versions(
        self, filter_string: str | None, order_by: list[str], offset: int, limit: int, ready: Ready = None
    ) -> Page:
        what, tags = search.MODEL_VERSIONS, (MODEL_VERSION_TAGS, "model_id, version")
        given = order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]
        rows, next_offset = self._search(what, filter_string, given, tags, self._versions, offset, limit, ready)
        # The stock server's search answers list no aliases.
        return Page(self._version_json(rows, aliases=False), next_offset)

    def _search(
        self,
        what: search.Searchable,
        filter_string: str | None,
        order_by: list[str],
        tags: tuple[Any, str],
        fetch: Callable[[list[Cond], dict[str, Any], str], list[dict[str, Any]]],
        offset: int,
        limit: int,
        ready: Ready,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of ``fetch``'s rows and the next page's offset; prompts are left out unless the
        filter asks for them (``tags``: the tags table and key columns that mark a prompt)."""
        clauses = search.parse_filter(what, filter_string)
        order = search.with_defaults(what, search.parse_order_by(what, order_by))
        extra: list[Cond] = []
        if not _querying_prompts(clauses):
            clauses = [c for c in clauses if not (c.entity == search.TAG and c.key == IS_PROMPT_TAG)]
            extra.append(self._not_prompt(*tags))
        compiled = search.compile_filter(what, clauses, {"_prompt": IS_PROMPT_TAG})
        if ready:
            ready()
        limit = max(limit, 0)
        terms = [t for o in order for t in search.attr_order_sql(what.order_attrs[o.key], o.ascending)]
        tail = f" ORDER BY {', '.join(terms)} LIMIT %(_limit)s OFFSET %(_offset)s"
        rows = fetch([*compiled.conds, *extra], {**compiled.params, "_limit": limit + 1, "_offset": offset}, tail)
        return rows[:limit], offset + limit if len(rows) > limit else None

    @staticmethod
    def _not_prompt(table: Any, key: str) -> Cond:
        prompts = current(table, key, [cond("key = %(_prompt)s", "key"), _LIVE, cond("lower(value) = 'true'", "value")])
        columns = tuple(k.strip() for k in key.split(","))
        return Cond(f"({key}) NOT IN ({prompts})" if len(columns) > 1 else f"{key} NOT IN ({prompts})", columns)

    # -- JSON --
    def _model_json(self, models: list[dict[str, Any]], by_stage: bool = False) -> list[dict[str, Any]]:
        """``by_stage``: latest_versions ordered by stage name, as the stock store's search query yields them."""
        if not models:
            return []
        ids = tuple(m["model_id"] for m in models)
        tags = self._tags(REGISTERED_MODEL_TAGS, "model_id", ids)
        aliases: dict[str, list[dict[str, str]]] = defaultdict(list)
        for model_id, alias, version in self._t.query(
            current(
                REGISTERED_MODEL_ALIASES, "model_id, alias, version", [cond("model_id IN %(ids)s", "model_id"), _LIVE]
            )
            + " ORDER BY alias",
            {"ids": ids},
        ):
            aliases[model_id].append({"alias": alias, "version": str(version)})
        out = []
        for m in models:
            item: dict[str, Any] = {"name": m["name"], "creation_timestamp": m["creation_timestamp"]}
            if m["last_updated_timestamp"]:
                item["last_updated_timestamp"] = m["last_updated_timestamp"]
            if m["description"]:
                item["description"] = m["description"]
            latest = self.latest_versions(m["model_id"], aliases=False)
            if by_stage:
                latest.sort(key=lambda v: str(v["current_stage"]))
            if latest:
                item["latest_versions"] = latest
            if m["deployment_job_id"]:
                item["deployment_job_id"] = m["deployment_job_id"]
            if model_tags := tags.get((m["model_id"],)):
                item["tags"] = model_tags
            if model_aliases := aliases.get(m["model_id"]):
                item["aliases"] = model_aliases
            out.append(item)
        return out

    def _version_json(self, rows: list[dict[str, Any]], aliases: bool = True) -> list[dict[str, Any]]:
        if not rows:
            return []
        ids = tuple({r["model_id"] for r in rows})
        tags = self._tags(MODEL_VERSION_TAGS, "model_id, version", ids)
        by_version: dict[tuple[str, int], list[str]] = defaultdict(list)
        for model_id, alias, version in self._t.query(
            current(
                REGISTERED_MODEL_ALIASES, "model_id, alias, version", [cond("model_id IN %(ids)s", "model_id"), _LIVE]
            )
            + " ORDER BY alias",
            {"ids": ids},
        ):
            by_version[(model_id, int(version))].append(alias)
        out = []
        for r in rows:
            number = int(r["version"])
            item: dict[str, Any] = {
                "name": r["name"],
                "version": str(number),
                "creation_timestamp": r["creation_timestamp"],
                "last_updated_timestamp": r["last_updated_timestamp"],
            }
            for key in ("user_id", "current_stage", "description", "source", "run_id", "run_link"):
                if r[key] is not None:
                    item[key] = r[key]
            item["status"] = r["status"]
            if version_tags := tags.get((r["model_id"], number)):
                item["tags"] = version_tags
            if aliases and (version_aliases := by_version.get((r["model_id"], number))):
                item["aliases"] = version_aliases
            out.append(item)
        return out

    def _tags(self, table: Any, key: str, ids: tuple[str, ...]) -> dict[tuple[Any, ...], list[dict[str, str]]]:
        columns = [k.strip() for k in key.split(",")]
        out: dict[tuple[Any, ...], list[dict[str, str]]] = defaultdict(list)
        sql = current(table, [*columns, "key", "value"], [cond("model_id IN %(ids)s", "model_id"), _LIVE])
        for row in self._t.query(sql + " ORDER BY key", {"ids": ids}):
            ident = tuple(int(v) if c == "version" else v for c, v in zip(columns, row, strict=False))
            out[ident].append({"key": row[-2], "value": row[-1]})
        return out

    def download_location(self, name: str, version: int) -> str | None:
        """Where a version's files are (``storage_location``, else its ``source``); None: no such version."""
        row = self.version_row(name, version)
        if row is None:
            return None
        return str(row["storage_location"] or row["source"])
