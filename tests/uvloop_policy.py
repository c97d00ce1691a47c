"""A pytest plugin for ``make test-uvloop``: every event loop the tests start is uvloop's, the
loop the proxy and the counterparty run on in production."""

from __future__ import annotations

import asyncio

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def pytest_report_header() -> str:
    return "event loop: uvloop"
