"""Log settings: JSON lines with the request id, secrets masked in every line (messages and tracebacks)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.faults.conftest import REPO

SCRIPT = """
import logging
from trackstream import logs
from trackstream.settings import Settings
s = Settings(mode="kafka", kafka_bootstrap="k:9092", clickhouse_url="clickhouse://u:pw-secret-1@ch:9000/db",
             s3_endpoint="http://s3:8333", s3_access_key="ak", s3_secret_key="s3-secret-2", log_format="json")
logs.configure(s.log_level, s.log_format, s.secrets())
token = logs.REQUEST_ID.set("rid-7")
logging.getLogger("x").warning("connecting to %s with %s", s.clickhouse_url, s.s3_secret_key)
logs.REQUEST_ID.reset(token)
try:
    raise RuntimeError("bad key s3-secret-2")
except RuntimeError:
    logging.getLogger("y").exception("failed")
logging.getLogger("z").debug("not shown at INFO")
"""


def test_json_lines_mask_secrets_and_carry_the_request_id() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "pw-secret-1" not in out.stderr and "s3-secret-2" not in out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "WARNING" and first["logger"] == "x" and first["request_id"] == "rid-7"
    assert "clickhouse://u:***@ch:9000/db" in first["message"]
    assert "request_id" not in second  # logged outside any request
    assert "RuntimeError: bad key ***" in second["exception"]
