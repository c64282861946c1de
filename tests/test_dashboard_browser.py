"""The dashboard page in headless Chromium against a seeded database: signed in through the
operator token form, the charts drawn by the shipped Chart.js, the numbers shown equal to the
ledger's, and a screenshot taken.

Skipped only where no Chromium binary exists (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from app.dashboard.render import usd
from app.quota import QuotaLedger
from tests.browser import chromium_binary, chromium_page
from tests.conftest import OPERATOR_TOKEN, SettingsFactory
from tests.dashboard_env import THEIRS, ClientFactory, ServerFactory, start_dashboard

CHROMIUM = chromium_binary()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary on PATH (apt-get install chromium)"
)

# What the page shows once its scripts ran, read from the rendered DOM.
READ_PAGE = """(() => {
  const chart = id => Chart.getChart(document.getElementById(id));
  const charts = ["spend-chart", "outcomes-chart", "calibration-chart"].map(id => {
    const c = chart(id);
    const canvas = document.getElementById(id);
    return {id, drawn: !!c, width: canvas.width, height: canvas.height,
            type: c ? (c.config.type || "mixed") : null};
  });
  const spendBars = chart("spend-chart").data.datasets
    .filter(d => d.type === "bar").map(d => [d.label, d.data]);
  const budgetLines = chart("spend-chart").data.datasets
    .filter(d => d.type === "line").map(d => [d.label, d.data]);
  const table = [...document.querySelectorAll("#spend-table tbody tr")]
    .map(tr => [...tr.children].map(td => td.textContent));
  return JSON.stringify({
    charts, spendBars, budgetLines, table,
    days: chart("spend-chart").data.labels,
    total: document.getElementById("spend-total").textContent,
    viewer: document.getElementById("viewer").textContent,
    path: location.pathname,
  });
})()"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_the_page_renders_charts_with_the_ledgers_numbers(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    db_url: str,
    tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    env = await start_dashboard(aiohttp_client, aiohttp_server, make_settings, db_url)
    base = str(env.client.make_url("/dashboard"))
    entries = await QuotaLedger(env.db).entries(limit=1000)
    async with chromium_page(CHROMIUM) as page:
        await page.navigate(base)  # no session: sent to the login page
        assert await page.evaluate("location.pathname") == "/dashboard/login"
        await page.evaluate(
            f"document.getElementById('token').value = {json.dumps(OPERATOR_TOKEN)};"
            "document.getElementById('token-login').submit(); true"
        )
        await page.wait_event("Page.loadEventFired")
        await page.wait_for("document.body && document.body.dataset.charts")
        seen = json.loads(await page.evaluate(READ_PAGE))
        shot = await page.screenshot()

    assert seen["path"] == "/dashboard" and seen["viewer"] == "operator"
    for chart in seen["charts"]:
        assert chart["drawn"] and chart["width"] > 100 and chart["height"] > 100, chart
    assert [c["type"] for c in seen["charts"]] == ["mixed", "bar", "scatter"]

    # The numbers drawn and written are the ledger's.
    bars = dict(seen["spendBars"])
    for repository, per_day in env.seeded.per_day.items():
        for day, cost in per_day.items():
            assert bars[repository][seen["days"].index(day.isoformat())] == pytest.approx(cost)
    total_of = {
        name: sum(e.cost_usd or 0.0 for e in entries if e.repository == name) for name in bars
    }
    shown = {row[0]: row[1] for row in seen["table"]}
    assert shown == {name: usd(round(total, 6)) for name, total in total_of.items()}
    assert THEIRS in shown  # the operator sees every repository
    assert seen["total"] == usd(round(sum(total_of.values()), 6))
    assert seen["budgetLines"] == [
        ["octo/demo daily budget", [env.seeded.daily_budget] * len(seen["days"])]
    ]

    (tmp_path / "dashboard.png").write_bytes(shot)
    width, height = png_size(shot)
    assert width >= 1000 and height >= 1000
    assert len(shot) > 30_000, "the screenshot is nearly blank"
