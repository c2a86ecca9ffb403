"""Fixtures of the compatibility suite: the official client against a gateway with small inline artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Gateway, official_client
from trackstream.settings import Settings

INLINE_MAX = 1024


@pytest.fixture(params=["embedded", "kafka"])
def small_inline_gateway(request: pytest.FixtureRequest, gateway_factory: Callable[[Settings], Gateway]) -> Gateway:
    """A gateway whose artifacts above 1 KiB go by claim check."""
    name = "embedded_settings" if request.param == "embedded" else "kafka_settings"
    return gateway_factory(request.getfixturevalue(name)(artifact_inline_max_bytes=INLINE_MAX))


@pytest.fixture
def small_inline_client(small_inline_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with official_client(small_inline_gateway.url, monkeypatch) as client:
        yield client
