"""The scripted session of official-client calls that the differential test runs against every server.

:func:`run_session` drives one tracking URI through the same calls and returns a JSON-able list of
``[label, result]`` steps: a result is the normalized return value, or ``{"error": code, "status":
HTTP status}`` for an MlflowException (status ``None`` when the client raised it itself). Ids become
placeholders in order of appearance, times and generated run names are dropped, so two servers that
behave the same give equal lists.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.entities import Experiment, FileInfo, Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList

Step = list[Any]

_RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")
_ARTIFACT_URI = re.compile(r"^mlflow-artifacts:/+(?:[^/]*@)?(?:[^/]*/)??(\d+)(/.*)?$")
_TIMES = {"start_time", "end_time", "creation_time", "last_update_time", "deleted_time"}


class Ids:
    """Stable placeholders for server-generated values, in order of appearance."""

    def __init__(self) -> None:
        self.experiments: dict[str, str] = {"0": "EXP0"}
        self.runs: dict[str, str] = {}
        self.names: dict[str, str] = {}

    def exp(self, experiment_id: Any) -> str:
        key = str(experiment_id)
        return self.experiments.setdefault(key, f"EXP{len(self.experiments)}")

    def run(self, run_id: str) -> str:
        return self.runs.setdefault(run_id, f"RUN{len(self.runs) + 1}")

    def generated_name(self, name: str) -> str:
        return self.names.setdefault(name, f"<generated-name-{len(self.names) + 1}>")

    def artifact_uri(self, uri: str) -> str:
        m = _ARTIFACT_URI.match(uri)
        if not m:
            return uri
        return f"mlflow-artifacts:/{self.exp(m.group(1))}{m.group(2) or ''}"

    def text(self, value: str) -> str:
        value = _RUN_ID.sub(lambda m: self.runs.get(m.group(0), m.group(0)), value)
        return self.names.get(value, value)


def _float(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class Recorder:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.ids = Ids()
        self.steps: list[Step] = []
        self.last_status: int | None = None

    # -- conversions --
    def experiment(self, e: Experiment | None) -> Any:
        if e is None:
            return None
        return {
            "experiment_id": self.ids.exp(e.experiment_id),
            "name": e.name,
            "artifact_location": self.ids.artifact_uri(e.artifact_location),
            "lifecycle_stage": e.lifecycle_stage,
            "tags": dict(e.tags),
            "has_creation_time": e.creation_time is not None,
        }

    def run(self, r: Run | None) -> Any:
        if r is None:
            return None
        i = r.info
        return {
            "info": {
                "run_id": self.ids.run(i.run_id),
                "run_name": i.run_name,
                "experiment_id": self.ids.exp(i.experiment_id),
                "user_id": i.user_id,
                "status": i.status,
                "has_end_time": i.end_time is not None,
                "artifact_uri": self.ids.artifact_uri(i.artifact_uri),
                "lifecycle_stage": i.lifecycle_stage,
            },
            "data": {
                "metrics": {m.key: self.metric(m) for m in r.data._metric_objs},
                "params": dict(r.data.params),
                "tags": dict(r.data.tags),
            },
            "inputs": len(r.inputs.dataset_inputs) if r.inputs else 0,
        }

    def metric(self, m: Metric) -> Any:
        return [m.key, _float(m.value), m.timestamp, m.step]

    def convert(self, value: Any) -> Any:
        if isinstance(value, Experiment):
            return self.experiment(value)
        if isinstance(value, Run):
            return self.run(value)
        if isinstance(value, Metric):
            return self.metric(value)
        if isinstance(value, FileInfo):
            return [value.path, value.is_dir, value.file_size]
        if isinstance(value, PagedList):
            return {"items": [self.convert(x) for x in value], "has_token": bool(value.token)}
        if isinstance(value, (list, tuple)):
            return [self.convert(x) for x in value]
        if isinstance(value, dict):
            return {str(k): self.convert(x) for k, x in value.items()}
        if isinstance(value, float):
            return _float(value)
        return value

    # -- recording --
    def call(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.last_status = None
        try:
            out = fn(*args, **kwargs)
        except MlflowException as exc:
            # The HTTP status of the client's last request (the client re-raises some errors as plain
            # MlflowException), None when it failed before getting any answer.
            status = self.last_status
            self.steps.append([label, {"error": exc.error_code, "status": status}])
            return None
        self.steps.append([label, self.convert(out)])
        return out

    def new_experiment(self, label: str, name: str, **kwargs: Any) -> str | None:
        """create_experiment, recording the new id's placeholder."""
        client = MlflowClient(self.uri)
        created: list[str] = []

        def create() -> str:
            created.append(client.create_experiment(name, **kwargs))
            return self.ids.exp(created[0])

        self.call(label, create)
        return created[0] if created else None

    def note(self, label: str, value: Any) -> None:
        self.steps.append([label, self.convert(value)])

    def rest(
        self,
        label: str,
        method: str,
        path: str,
        prefix: str = "/api/2.0/mlflow/",
        keep_body: bool = False,
        **kwargs: Any,
    ) -> Any:
        """A raw REST call (for what the client would not send): records the status and error code, and with
        ``keep_body`` the whole answer as ``answer`` normalizes it (so a field one server sends and the other
        leaves out shows)."""
        resp = requests.request(method, f"{self.uri}{prefix}{path}", timeout=30, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            body = {"text": resp.text[:200]}
        if resp.status_code != 200:
            self.steps.append([label, {"error": body.get("error_code"), "status": resp.status_code}])
        else:
            self.steps.append([label, {"status": 200, "body": self.answer(body)} if keep_body else {"status": 200}])
        return body

    def answer(self, body: Any) -> Any:
        return body

    def finish(self) -> list[Step]:
        return [[self.ids.text(label), self._scrub(value)] for label, value in self.steps]

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {self.ids.text(k): self._scrub(x) for k, x in value.items() if k not in _TIMES}
        if isinstance(value, list):
            return [self._scrub(x) for x in value]
        if isinstance(value, str):
            return self.ids.text(value)
        return value


@contextlib.contextmanager
def _client_for(uri: str, recorder: Recorder) -> Iterator[None]:
    """Point the fluent API at ``uri``, record the HTTP status of every client request, no retries."""
    import mlflow.store.artifact.http_artifact_repo as artifact_repo
    import mlflow.tracking.fluent as fluent
    import mlflow.utils.rest_utils as rest_utils

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")}
    original: Callable[..., Any] = rest_utils.http_request

    def recording(*args: Any, **kwargs: Any) -> Any:
        resp = original(*args, **kwargs)
        recorder.last_status = resp.status_code
        return resp

    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    rest_utils.http_request = recording
    artifact_repo.http_request = recording  # type: ignore[attr-defined]
    mlflow.set_tracking_uri(uri)
    fluent._active_experiment_id = None
    try:
        yield
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        rest_utils.http_request = original
        artifact_repo.http_request = original  # type: ignore[attr-defined]
        fluent._active_experiment_id = None
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        for k, val in saved_env.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val


def _pause() -> None:
    """Keeps server-assigned creation times distinct, so default orders never fall to id tie-breaks."""
    time.sleep(0.005)


def run_session(uri: str) -> list[Step]:
    rec = Recorder(uri)
    with _client_for(uri, rec), tempfile.TemporaryDirectory() as tmp:
        client = MlflowClient(uri)
        sections: list[tuple[str, Callable[[], None]]] = [
            ("experiments", lambda: _experiments(rec, client)),
            ("runs and data", lambda: _runs_and_data(rec, client)),
            ("search", lambda: _search(rec, client)),
            ("lifecycle", lambda: _lifecycle(rec, client)),
            ("artifacts", lambda: _artifacts(rec, client, Path(tmp))),
            ("validation", lambda: _validation(rec, client)),
        ]
        for name, section in sections:
            try:
                section()
            except Exception as exc:  # recorded, so the comparison shows where a server broke the script
                rec.note(f"section {name} aborted", f"{type(exc).__name__}: {exc}")
                while mlflow.active_run():
                    mlflow.end_run()
    return rec.finish()


# ---------------------------------------------------------------------------------------------------
def _experiments(rec: Recorder, client: MlflowClient) -> None:
    rec.call("get_experiment_by_name missing", client.get_experiment_by_name, "diff-nope")
    rec.call("get_experiment default", client.get_experiment, "0")
    first = rec.call("set_experiment new", mlflow.set_experiment, "diff-main")
    _pause()
    again = rec.call("set_experiment existing", mlflow.set_experiment, "diff-main")
    rec.note(
        "set_experiment same id", first is not None and again is not None and first.experiment_id == again.experiment_id
    )
    _pause()
    tagged = rec.new_experiment("create_experiment tags", "diff-tagged", tags={"team": "a", "x": "1"})
    _pause()
    rec.new_experiment("create_experiment plain", "diff-other")
    _pause()
    rec.new_experiment("create_experiment long tag value", "diff-longtag", tags={"big": "v" * 20001})
    rec.new_experiment("create_experiment bad tag key", "diff-badtag", tags={"bad|key": "v"})
    rec.new_experiment("create_experiment long name", "n" * 501)
    rec.call("create_experiment duplicate", client.create_experiment, "diff-other")
    rec.call("create_experiment empty name", client.create_experiment, "")
    rec.call("get_experiment_by_name", client.get_experiment_by_name, "diff-tagged")
    rec.call("set_experiment_tag", client.set_experiment_tag, tagged, "team", "b")
    rec.call("set_experiment_tag 20000 value", client.set_experiment_tag, tagged, "big", "v" * 20000)
    rec.call("set_experiment_tag 20001 value", client.set_experiment_tag, tagged, "bigger", "v" * 20001)
    rec.call("set_experiment_tag bad key", client.set_experiment_tag, tagged, "bad|key", "v")
    rec.call("set_experiment_tag missing experiment", client.set_experiment_tag, "987654321", "k", "v")
    rec.call("get_experiment tagged", client.get_experiment, tagged)
    rec.call("delete_experiment_tag", client.delete_experiment_tag, tagged, "x")
    rec.call("delete_experiment_tag missing", client.delete_experiment_tag, tagged, "nope")
    rec.call("get_experiment after tag delete", client.get_experiment, tagged)

    searches: list[tuple[str, dict[str, Any]]] = [
        ("search_experiments all", {}),
        ("search_experiments name like", {"filter_string": "name LIKE 'diff-%'"}),
        ("search_experiments name ilike", {"filter_string": "name ILIKE 'DIFF-T%'"}),
        ("search_experiments name =", {"filter_string": "name = 'diff-other'"}),
        ("search_experiments name !=", {"filter_string": "name != 'diff-other'"}),
        ("search_experiments tag", {"filter_string": "tags.team = 'b'"}),
        ("search_experiments tag like", {"filter_string": "tags.team LIKE '%'"}),
        ("search_experiments creation_time", {"filter_string": "creation_time > 0"}),
        ("search_experiments order name asc", {"order_by": ["name ASC"]}),
        ("search_experiments order name desc", {"order_by": ["name DESC"]}),
        ("search_experiments order creation_time", {"order_by": ["creation_time ASC"]}),
        ("search_experiments bad filter", {"filter_string": "name = diff"}),
        ("search_experiments bad attr", {"filter_string": "attributes.nope = 'x'"}),
        ("search_experiments bad order", {"order_by": ["metrics.x ASC"]}),
        ("search_experiments OR", {"filter_string": "name = 'a' OR name = 'b'"}),
    ]
    for label, kwargs in searches:
        rec.call(label, client.search_experiments, **kwargs)
    page = rec.call("search_experiments page 1", client.search_experiments, max_results=2)
    while page is not None and page.token:
        page = rec.call("search_experiments next page", client.search_experiments, max_results=2, page_token=page.token)


def _exp_id(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    assert exp is not None
    return str(exp.experiment_id)


def _runs_and_data(rec: Recorder, client: MlflowClient) -> None:
    mlflow.set_experiment("diff-main")
    with mlflow.start_run(run_name="named") as named:
        rec.ids.run(named.info.run_id)
        rec.call("get_run named", client.get_run, named.info.run_id)
    _pause()
    with mlflow.start_run() as unnamed:
        rec.ids.run(unnamed.info.run_id)
        rec.ids.generated_name(unnamed.info.run_name)
        rec.note("generated name matches tag", unnamed.data.tags.get("mlflow.runName") == unnamed.info.run_name)
        rec.call("fluent log_params", mlflow.log_params, {"p1": 1, "p2": "x"})
        rec.call("fluent log_param same", mlflow.log_param, "p1", 1)
        rec.call("fluent log_param changed", mlflow.log_param, "p1", 2)
        rec.call("fluent set_tags", mlflow.set_tags, {"t1": "a", "t2": "b"})
        rec.call("fluent delete_tag", mlflow.delete_tag, "t2")
        rec.call("fluent log_metrics", mlflow.log_metrics, {"m1": 1.0, "m2": 2.0}, step=3, timestamp=50)
        rec.call("fluent log_metric", mlflow.log_metric, "m1", 1.5, step=4, timestamp=40)
        _pause()
        with mlflow.start_run(run_name="child", nested=True) as child:
            rec.ids.run(child.info.run_id)
        rec.call("get_run child", client.get_run, child.info.run_id)
        rec.call("get_run unnamed", client.get_run, unnamed.info.run_id)
    _pause()

    run = client.create_run(_exp_id(client, "diff-main"), run_name="data", start_time=1_000)
    rid = run.info.run_id
    rec.ids.run(rid)
    rec.call("log_param", client.log_param, rid, "lr", "0.1")
    rec.call("log_param same value", client.log_param, rid, "lr", "0.1")
    rec.call("log_param changed value", client.log_param, rid, "lr", "0.2")
    rec.call("log_params", client.log_batch, rid, params=[Param("a", "1"), Param("b", "two")])
    rec.call("log_batch changed param", client.log_batch, rid, params=[Param("a", "9")])
    rec.call("set_tag", client.set_tag, rid, "kind", "x")
    rec.call("set_tag overwrite", client.set_tag, rid, "kind", "y")
    rec.call("set_tag to delete", client.set_tag, rid, "gone", "1")
    rec.call("delete_tag", client.delete_tag, rid, "gone")
    rec.call("delete_tag missing", client.delete_tag, rid, "never")
    for step, (value, ts) in enumerate([(0.5, 100), (0.4, 110), (0.3, 120), (0.35, 130), (0.2, 140)]):
        rec.call(f"log_metric loss step {step}", client.log_metric, rid, "loss", value, timestamp=ts, step=step)
    # Latest: the higher step wins over a later timestamp.
    rec.call("log_metric acc step 5", client.log_metric, rid, "acc", 0.5, timestamp=1000, step=5)
    rec.call("log_metric acc step 3 later", client.log_metric, rid, "acc", 0.9, timestamp=2000, step=3)
    rec.call("log_metric same step later ts", client.log_metric, rid, "same", 1.0, timestamp=10, step=1)
    rec.call("log_metric same step earlier ts", client.log_metric, rid, "same", 2.0, timestamp=5, step=1)
    rec.call("log_metric nan", client.log_metric, rid, "nanm", float("nan"), timestamp=1, step=0)
    rec.call("log_metric +inf", client.log_metric, rid, "big", float("inf"), timestamp=1, step=0)
    rec.call("log_metric -inf", client.log_metric, rid, "small", float("-inf"), timestamp=1, step=0)
    rec.call("log_metric default step", client.log_metric, rid, "nostep", 3.0, timestamp=7)
    rec.call(
        "log_batch",
        client.log_batch,
        rid,
        metrics=[Metric("batch_m", float(i), 500 + i, i) for i in range(5)],
        params=[Param("batch_p", "v")],
        tags=[RunTag("batch_t", "t")],
    )
    rec.call("get_run data", client.get_run, rid)
    for key in ("loss", "acc", "same", "nanm", "big", "small", "batch_m", "missing"):
        rec.call(f"get_metric_history {key}", client.get_metric_history, rid, key)
    token: str | None = None
    for i in range(5):
        params: dict[str, Any] = {"run_id": rid, "metric_key": "loss", "max_results": 2}
        if token:
            params["page_token"] = token
        resp = requests.get(f"{rec.uri}/api/2.0/mlflow/metrics/get-history", params=params, timeout=30)
        body = resp.json()
        metrics = [[m["key"], m["value"], m["timestamp"], m.get("step", 0)] for m in body.get("metrics", [])]
        rec.note(
            f"get-history page {i}",
            {"status": resp.status_code, "metrics": metrics, "has_token": bool(body.get("next_page_token"))},
        )
        token = body.get("next_page_token")
        if not token:
            break
    # charts: the sampled bulk-interval answer (MLflow's NTILE sample) and the UI's get-history-bulk
    chart = [Metric("chart", float(i % 7), 3000 + i // 3, i // 2) for i in range(53)]
    chart += [Metric("chart", float("nan"), 3005, 4), Metric("chart", 1e308, 3001, 25)]
    client.log_batch(rid, metrics=chart)
    client.log_batch(rid, metrics=chart[:20])  # a replay: stored once
    other = client.create_run(_exp_id(client, "diff-main"), run_name="chart-other", start_time=1_001).info.run_id
    rec.ids.run(other)
    client.log_batch(other, metrics=[Metric("chart", float(i), 100 + i, i) for i in range(9)])
    interval: tuple[tuple[str, dict[str, Any]], ...] = (
        ("default", {}),
        ("max 1", {"max_results": 1}),
        ("max 4", {"max_results": 4}),
        ("max 10", {"max_results": 10}),
        ("max 54", {"max_results": 54}),
        ("range", {"max_results": 5, "start_step": 3, "end_step": 17}),
        ("empty range", {"start_step": 100, "end_step": 200}),
    )
    for label, extra in interval:
        resp = requests.get(
            f"{rec.uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
            params={"run_ids": [rid, other], "metric_key": "chart", **extra},
            timeout=30,
        )
        metrics = [
            [rec.ids.run(m["run_id"]), m["step"], m["timestamp"], m["value"]] for m in resp.json().get("metrics", [])
        ]
        rec.note(f"bulk-interval {label}", {"status": resp.status_code, "metrics": metrics})
    bulk: tuple[tuple[str, dict[str, Any]], ...] = (("all", {}), ("max 50", {"max_results": 50}))
    for label, extra in bulk:
        resp = requests.get(
            f"{rec.uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk",
            params={"run_id": [other, rid], "metric_key": "batch_m", **extra},
            timeout=30,
        )
        by_run: dict[str, list[list[Any]]] = {}  # the runs come by run id, which differs between the servers
        for m in resp.json().get("metrics", []):
            by_run.setdefault(rec.ids.run(m["run_id"]), []).append([m["step"], m["timestamp"], m["value"]])
        rec.note(f"get-history-bulk {label}", {"status": resp.status_code, "metrics": by_run})
    rec.call("update_run", client.update_run, rid, "FAILED")
    rec.call("update_run rename", client.update_run, rid, name="data-renamed")
    rec.call("get_run after update", client.get_run, rid)
    rec.call("set_terminated", client.set_terminated, rid)
    rec.call("get_run after set_terminated", client.get_run, rid)


def _search(rec: Recorder, client: MlflowClient) -> None:
    exp = client.create_experiment("diff-search")
    rec.ids.exp(exp)
    specs = [("a", 0.9, "0.1", "x"), ("b", 0.5, "0.2", "y"), ("c", 0.1, "0.1", None), ("d", None, None, "x-2")]
    ids: dict[str, str] = {}
    for i, (name, loss, lr, tag) in enumerate(specs):
        rid = client.create_run(exp, run_name=name, start_time=1000 + i).info.run_id
        rec.ids.run(rid)
        ids[name] = rid
        if loss is not None:
            client.log_metric(rid, "loss", 5.0, timestamp=1, step=0)
            client.log_metric(rid, "loss", loss, timestamp=2, step=1)
        if lr is not None:
            client.log_param(rid, "lr", lr)
        if tag is not None:
            client.set_tag(rid, "kind", tag)
        if name == "b":
            client.set_terminated(rid)
    client.log_metric(ids["c"], "nanm", float("nan"), timestamp=1)
    client.log_metric(ids["d"], "big", float("inf"), timestamp=1)

    def names(runs: Any) -> Any:
        if runs is None:
            return None
        return {"names": [r.info.run_name for r in runs], "has_token": bool(runs.token)}

    filters = [
        "",
        "metrics.loss < 0.6",
        "metrics.loss = 0.5",
        "metrics.loss != 0.5",
        "metrics.loss >= 0.5 and params.lr = '0.1'",
        "metric.loss > 0.2 AND metric.loss <= 0.9",
        "metrics.nanm = 0",
        "metrics.big > 1e300",
        "params.lr != '0.1'",
        "param.lr LIKE '0.%'",
        "params.lr ILIKE '0.2'",
        "tags.kind LIKE 'x%'",
        "tags.kind ILIKE 'X-%'",
        "tags.kind = 'y'",
        "params.lr IS NULL",
        "params.lr IS NOT NULL",
        "tags.kind IS NULL",
        "tags.kind IS NOT NULL",
        "attributes.status = 'FINISHED'",
        "attributes.status != 'FINISHED'",
        "run_name = 'c'",
        "attributes.run_name LIKE '%b%'",
        "attributes.run_name ILIKE 'A'",
        "attributes.start_time >= 1002",
        "attributes.created < 1001",
        "attributes.end_time > 0",
        'tags.`mlflow.runName` = "a"',
        'tags."mlflow.runName" = "b"',
        "attributes.user_id LIKE '%'",
        f"attributes.run_id IN ('{ids['a']}', '{ids['c']}')",
        f"attributes.run_id NOT IN ('{ids['a']}')",
        f"attributes.run_id = '{ids['d']}'",
        "datasets.name = 'train'",
        "datasets.digest IN ('abc')",
        # invalid
        "metrics.loss < 'x'",
        "params.lr = 0.1",
        "metrics.loss < 1 OR metrics.loss > 2",
        "foo.bar = '1'",
        "attributes.nope = 'x'",
        "metrics.loss IS NULL",
        "metrics.loss LIKE '1'",
        "params.lr IN ('0.1')",
        "attributes.status IN ('FINISHED')",
        "attributes.start_time = 'x'",
        "params.lr =",
        "params.lr > '0.1'",
    ]
    for f in filters:
        rec.call(f"search_runs filter {f!r}", lambda f=f: names(client.search_runs([exp], f)))
    orders = [
        ["metrics.loss ASC"],
        ["metrics.loss DESC"],
        ["metrics.loss"],
        ["params.lr DESC", "run_name ASC"],
        ["tags.kind ASC"],
        ["attributes.start_time ASC"],
        ["attributes.run_name DESC"],
        ["status"],
        ["metrics.big ASC"],
        ["metrics.nanm DESC"],
        ["metrics.nanm ASC"],
        ["metrics.loss", "params.lr", "tags.kind DESC"],
        ["metrics.loss UP"],
        ["attributes.nope"],
        ["datasets.name"],
    ]
    for o in orders:
        rec.call(f"search_runs order {o}", lambda o=o: names(client.search_runs([exp], order_by=o)))
    page = rec.call("search_runs page 1", lambda: client.search_runs([exp], max_results=3))
    rec.note("search_runs page 1 names", names(page))
    while page is not None and page.token:
        page = client.search_runs([exp], max_results=3, page_token=page.token)
        rec.note("search_runs next page", names(page))
    rec.call("search_runs bad token", lambda: names(client.search_runs([exp], page_token="garbage")))
    rec.call("search_runs max_results 0", lambda: names(client.search_runs([exp], max_results=0)))
    rec.call("search_runs max_results too big", lambda: names(client.search_runs([exp], max_results=50001)))
    rec.call("search_runs two experiments", lambda: len(client.search_runs([exp, _exp_id(client, "diff-main")])))


def _lifecycle(rec: Recorder, client: MlflowClient) -> None:
    exp = client.create_experiment("diff-life")
    rec.ids.exp(exp)
    r1 = client.create_run(exp, run_name="keep", start_time=1).info.run_id
    r2 = client.create_run(exp, run_name="drop", start_time=2).info.run_id
    rec.ids.run(r1)
    rec.ids.run(r2)

    def names(view: int) -> Any:
        return sorted(r.info.run_name for r in client.search_runs([exp], run_view_type=view))

    rec.call("delete_run", client.delete_run, r2)
    rec.call("get_run deleted", client.get_run, r2)
    rec.call("search ACTIVE_ONLY", names, ViewType.ACTIVE_ONLY)
    rec.call("search DELETED_ONLY", names, ViewType.DELETED_ONLY)
    rec.call("search ALL", names, ViewType.ALL)
    rec.call("log_param on deleted run", client.log_param, r2, "p", "1")
    rec.call("set_tag on deleted run", client.set_tag, r2, "t", "1")
    rec.call("log_metric on deleted run", client.log_metric, r2, "m", 1.0, timestamp=1)
    rec.call("update_run on deleted run", client.update_run, r2, "FINISHED")
    rec.call("restore_run", client.restore_run, r2)
    rec.call("search ALL after restore", names, ViewType.ALL)
    rec.call("search DELETED_ONLY after restore", names, ViewType.DELETED_ONLY)
    rec.call("delete_run missing", client.delete_run, "f" * 32)

    rec.call("rename_experiment", client.rename_experiment, exp, "diff-life-renamed")
    rec.call("get_experiment renamed", client.get_experiment, exp)
    rec.call("rename_experiment onto a taken name", client.rename_experiment, exp, "diff-main")
    rec.call("get_experiment_by_name old name", client.get_experiment_by_name, "diff-life")
    rec.call("delete_experiment", client.delete_experiment, exp)
    rec.call("get_experiment deleted", client.get_experiment, exp)
    rec.call("get_experiment_by_name deleted", client.get_experiment_by_name, "diff-life-renamed")
    rec.call("get_run in deleted experiment", client.get_run, r1)
    rec.call("search DELETED_ONLY in deleted exp", names, ViewType.DELETED_ONLY)
    rec.call("search_experiments DELETED_ONLY", client.search_experiments, view_type=ViewType.DELETED_ONLY)
    rec.call(
        "search_experiments ALL like",
        client.search_experiments,
        view_type=ViewType.ALL,
        filter_string="name LIKE 'diff-life%'",
    )
    rec.call("create_run in deleted experiment", client.create_run, exp)
    rec.call("set_experiment deleted", mlflow.set_experiment, "diff-life-renamed")
    rec.call("delete_experiment again", client.delete_experiment, exp)
    rec.call("restore_experiment", client.restore_experiment, exp)
    rec.call("restore_experiment again", client.restore_experiment, exp)
    rec.call("get_experiment restored", client.get_experiment, exp)
    rec.call("search ALL after experiment restore", names, ViewType.ALL)
    rec.call("search ACTIVE_ONLY after experiment restore", names, ViewType.ACTIVE_ONLY)


def _artifacts(rec: Recorder, client: MlflowClient, tmp: Path) -> None:
    exp = client.get_experiment_by_name("diff-main")
    assert exp is not None
    rid = client.create_run(exp.experiment_id, run_name="files").info.run_id
    rec.ids.run(rid)
    src = tmp / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "hello.txt").write_text("hello\n")
    (src / "dir" / "a.txt").write_text("a" * 10)
    (src / "dir" / "sub" / "b.txt").write_text("bb")
    rec.call("list_artifacts empty", client.list_artifacts, rid)
    rec.call("log_artifact", client.log_artifact, rid, str(src / "hello.txt"))
    rec.call("log_artifact to path", client.log_artifact, rid, str(src / "hello.txt"), "copies/x")
    rec.call("log_artifacts dir", client.log_artifacts, rid, str(src / "dir"), "nested")
    rec.call("list_artifacts root", client.list_artifacts, rid)
    rec.call("list_artifacts nested", client.list_artifacts, rid, "nested")
    rec.call("list_artifacts nested/sub", client.list_artifacts, rid, "nested/sub")
    rec.call("list_artifacts file", client.list_artifacts, rid, "hello.txt")
    rec.call("list_artifacts missing", client.list_artifacts, rid, "nope")

    def download(path: str, dst: str) -> Any:
        local = Path(client.download_artifacts(rid, path, str(tmp / dst)))
        if local.is_file():
            return {"file": local.name, "content": local.read_text()}
        return {str(p.relative_to(local)): p.read_text() if p.is_file() else "<dir>" for p in sorted(local.rglob("*"))}

    rec.call("download_artifacts file", download, "hello.txt", "d1")
    rec.call("download_artifacts nested dir", download, "nested", "d2")
    rec.call("download_artifacts root", download, "", "d3")
    rec.call("download_artifacts missing", download, "nope.txt", "d4")
    rec.call(
        "mlflow.artifacts.download_artifacts",
        lambda: Path(
            mlflow.artifacts.download_artifacts(f"runs:/{rid}/nested/a.txt", dst_path=str(tmp / "d5"))
        ).read_text(),
    )
    resp = requests.get(
        f"{rec.uri}/api/2.0/mlflow/artifacts/list", params={"run_id": rid, "path": "nested"}, timeout=30
    )
    body = resp.json()
    rec.note(
        "REST artifacts/list",
        {"status": resp.status_code, "root_uri": rec.ids.artifact_uri(body["root_uri"]), "files": body.get("files")},
    )


def _validation(rec: Recorder, client: MlflowClient) -> None:
    exp = client.get_experiment_by_name("diff-main")
    assert exp is not None
    rid = client.create_run(exp.experiment_id, run_name="invalid").info.run_id
    rec.ids.run(rid)
    rec.call("get_metric_history missing run", client.get_metric_history, "0" * 32, "m")
    now = 1_700_000_000_000
    for label, key in [
        ("bad metric key", "bad key!"),
        ("metric key ..", "../up"),
        ("metric key /", "/abs"),
        ("metric key long", "k" * 251),
        ("metric key 250", "k" * 250),
        ("metric key ok chars", "a/b.c-d e:f"),
    ]:
        rec.call(f"log_metric {label}", client.log_metric, rid, key, 1.0, timestamp=now)
    rec.call("log_param key bad", client.log_param, rid, "bad?", "1")
    rec.call("log_param long value", client.log_param, rid, "long", "v" * 6001)
    rec.call("log_param 6000 value", client.log_param, rid, "long6000", "v" * 6000)
    rec.call("set_tag long value", client.set_tag, rid, "longtag", "t" * 8001)
    rec.call("set_tag 8000 value", client.set_tag, rid, "tag8000", "t" * 8000)
    rec.call("set_tag bad key", client.set_tag, rid, "bad|key", "1")
    rec.call("log_metric negative timestamp", client.log_metric, rid, "neg", 1.0, timestamp=-1)
    rec.call("log_metric negative step", client.log_metric, rid, "negstep", 1.0, timestamp=now, step=-1)
    rec.call(
        "log_batch bad key", client.log_batch, rid, metrics=[Metric("../up", 1.0, now, 0)], params=[Param("ok", "1")]
    )
    rec.call("get_run after invalid", client.get_run, rid)

    base = "runs/log-batch"
    metrics = [{"key": "m", "value": 1.0, "timestamp": now, "step": i} for i in range(1001)]
    rec.rest("REST log-batch 1001 metrics", "POST", base, json={"run_id": rid, "metrics": metrics})
    rec.rest("REST log-batch 1000 metrics", "POST", base, json={"run_id": rid, "metrics": metrics[:1000]})
    rec.rest(
        "REST log-batch 101 params",
        "POST",
        base,
        json={"run_id": rid, "params": [{"key": f"p{i}", "value": "x"} for i in range(101)]},
    )
    rec.rest(
        "REST log-batch 101 tags",
        "POST",
        base,
        json={"run_id": rid, "tags": [{"key": f"t{i}", "value": "x"} for i in range(101)]},
    )
    rec.rest(
        "REST log-batch 1001 total",
        "POST",
        base,
        json={"run_id": rid, "metrics": metrics[:950], "params": [{"key": f"q{i}", "value": "x"} for i in range(51)]},
    )
    rec.rest("REST log-batch no run_id", "POST", base, json={"metrics": metrics[:1]})
    rec.rest(
        "REST log-metric non-numeric",
        "POST",
        "runs/log-metric",
        json={"run_id": rid, "key": "m", "value": "abc", "timestamp": now, "step": 0},
    )
    rec.rest(
        "REST log-metric negative timestamp",
        "POST",
        "runs/log-metric",
        json={"run_id": rid, "key": "m", "value": 1.0, "timestamp": -5, "step": 0},
    )
    rec.rest(
        "REST log-metric missing value",
        "POST",
        "runs/log-metric",
        json={"run_id": rid, "key": "m", "timestamp": now, "step": 0},
    )
    rec.rest(
        "REST log-metric missing timestamp", "POST", "runs/log-metric", json={"run_id": rid, "key": "m", "value": 1.0}
    )
    rec.rest(
        "REST log-parameter long value",
        "POST",
        "runs/log-parameter",
        json={"run_id": rid, "key": "lp", "value": "v" * 6001},
    )
    rec.rest("REST set-tag long value", "POST", "runs/set-tag", json={"run_id": rid, "key": "lt", "value": "t" * 8001})
    rec.rest("REST runs/get missing run_id", "GET", "runs/get")
    rec.rest("REST experiments/get missing id", "GET", "experiments/get")
    rec.rest(
        "REST runs/search bad max_results", "POST", "runs/search", json={"experiment_ids": ["0"], "max_results": 0}
    )
    rec.call("get_run after REST", lambda: sorted(client.get_run(rid).data.params))

    rec.call("get_run missing", client.get_run, "0" * 32)
    rec.call("get_experiment missing", client.get_experiment, "987654321")
    rec.call("log_param missing run", client.log_param, "0" * 32, "p", "1")
    rec.call("log_metric missing run", client.log_metric, "0" * 32, "m", 1.0, timestamp=now)
    rec.call("create_run missing experiment", client.create_run, "987654321")
    rec.call("delete_experiment missing", client.delete_experiment, "987654321")
    rec.call("rename_experiment missing", client.rename_experiment, "987654321", "whatever")
