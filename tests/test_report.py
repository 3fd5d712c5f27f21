"""The HTML report rendered by headless Chromium, the leaderboard's filters and the Datasette metadata."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3

import pytest

from catalog_factory import build_catalog
from conftest import REPO, run_nas_agent
from nas_agent.catalog import Catalog
from nas_agent.report import collect

ARTIFACTS = REPO / "runs" / "test-artifacts"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run")


def invoke(*args):
    """The same command in this process (Typer's runner): no interpreter start-up for the quick cases."""
    from typer.testing import CliRunner

    from nas_agent.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_catalog(tmp_path_factory.mktemp("report") / "catalog.sqlite", models=14, epochs=3, seed=0)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver (the Debian packages), collecting the console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are missing: apt-get install -y chromium chromium-driver "
                    "(.ci/run does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1300,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium must not go looking for (or downloading) one.
    browser = webdriver.Chrome(service=Service(driver), options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def report(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "report.html"
    result = run_nas_agent("report", "--catalog", built.path, "--out", out)
    assert f"wrote {out}" in result.stdout
    return out


@pytest.mark.browser
def test_report_loads_in_chromium_with_every_table_and_plot(report, built, browser):
    browser.get(report.as_uri())
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    # Nothing but the file itself was fetched: the page works offline.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", report.read_text())

    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#leaderboard-img-classification tbody tr'))"
        ".map(r => [r.dataset.name, r.className, r.cells[0].textContent])")
    assert sorted(name for name, _, _ in rows) == sorted(built.trained)
    assert [css for name, css, _ in rows if name == built.reference] == ["reference"]
    assert [rank for _, _, rank in rows] == [str(i) for i in range(1, len(built.trained) + 1)]

    plots = dict(browser.execute_script(
        "return Array.from(document.images).map(i => [i.dataset.plot, i.complete ? i.naturalWidth : 0])"))
    expected = {"img-classification/scatter", "img-classification/distribution", "img-classification/curves",
                "strategies", "rejections"}
    assert set(plots) == expected and all(width > 300 for width in plots.values()), plots

    strategies = browser.execute_script(
        "return Array.from(document.querySelectorAll('#strategies-table tbody tr'))"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    assert dict(strategies) == {k: str(v) for k, v in built.proposals_by_strategy.items()}
    lineage = browser.execute_script("return document.querySelectorAll('#lineage ~ div li').length")
    with Catalog(built.path) as cat:
        assert lineage == sum(1 for m in cat.models() if m["parent"])

    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1300, height + 50)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000


@pytest.mark.browser
def test_clicking_a_header_sorts_the_leaderboard(report, browser):
    browser.get(report.as_uri())

    def column(index):
        return browser.execute_script(
            f"return Array.from(document.querySelectorAll('#leaderboard-img-classification tbody tr'))"
            f".map(r => r.cells[{index}].getAttribute('data-value'))")

    params_header = browser.find_elements("css selector", "#leaderboard-img-classification th")[6]
    assert params_header.text.startswith("params")
    params_header.click()
    ascending = [float(v) for v in column(6)]
    assert ascending == sorted(ascending) and len(set(ascending)) > 3
    params_header.click()
    assert [float(v) for v in column(6)] == sorted(ascending, reverse=True)
    assert browser.get_log("browser") == []


def test_report_figures_count_what_the_catalog_holds(built):
    with Catalog(built.path) as cat:
        data = collect(cat)
    (section,) = data.tasks
    assert len(section.first_epoch) == len(section.last_epoch) == len(built.trained)
    assert len(section.curves) == 10 and list(section.curves)[0] == section.rows[0]["name"]
    assert all(len(points) == 3 for points in section.curves.values())
    # Every rejected proposal or file is counted once, by its stage; the failed training as stage train.
    stages = {s.stage: s.count for s in data.rejections}
    assert stages == {**built.rejected_by_stage, "duplicate": built.duplicates, "train": len(built.failed)}
    (llm,) = data.llm
    assert llm["calls"] == built.llm_calls and llm["valid"] == built.llm_valid
    assert llm["seconds_per_valid"] == pytest.approx(llm["seconds"] / built.llm_valid)


def test_report_of_one_run_shows_only_that_run(built, tmp_path):
    second = built.run_ids[1]
    with Catalog(built.path) as cat:
        data = collect(cat, second)
    names = {r["name"] for r in data.tasks[0].rows}
    # That run's trained models, plus the reference row (trained by the first run) as the baseline.
    assert names == {n for n in built.by_run[second] if n not in built.failed} | {built.reference}
    assert {r["rank"] for r in data.tasks[0].rows if r["name"] == built.reference} == {None}
    assert sum(s["proposals"] for s in data.strategies) < sum(built.proposals_by_strategy.values())


def test_report_bad_input_is_a_one_line_error(built, tmp_path):
    for args, words in ((("--run", "nope"), "no run 'nope'"), (("--catalog", tmp_path / "none.sqlite"), "no catalog")):
        result = invoke("report", "--catalog", built.path, "--out", tmp_path / "r.html", *args)
        assert result.exit_code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_empty_catalog_gives_a_report_that_says_so(tmp_path):
    from nas_agent.report import build_report

    with Catalog(tmp_path / "empty.sqlite") as cat:
        page, data = build_report(cat)
    assert not data.tasks and 'id="no-results"' in page and "<img" not in page


# --- browsing: leaderboard filters and Datasette -------------------------------------


def test_leaderboard_filters_by_run_origin_dataset_and_size(built):
    with Catalog(built.path) as cat:
        board = {r["name"]: r for r in cat.leaderboard()}
    run = built.run_ids[1]
    low, high = 60_000, 100_000
    rows = json.loads(invoke("leaderboard", "--catalog", built.path, "--json", "--run", run, "--origin",
                             "mutate", "--min-params", low, "--max-params", high, "--dataset", "cifar-10").stdout)
    expected = [n for n in board if n in built.by_run[run] and board[n]["origin"] == "mutate"
                and low <= board[n]["n_params"] <= high]
    ranked = [r for r in rows if r["rank"] is not None]
    assert [r["name"] for r in ranked] == expected and expected
    assert [r["rank"] for r in ranked] == list(range(1, len(expected) + 1))
    assert [r["name"] for r in rows if r["rank"] is None] == [built.reference]  # the baseline stays listed
    mnist = json.loads(invoke("leaderboard", "--catalog", built.path, "--json", "--dataset", "mnist").stdout)
    assert [(r["name"], r["rank"]) for r in mnist] == [(built.reference, None)]
    bad = invoke("leaderboard", "--catalog", built.path, "--min-params", 10, "--max-params", 5)
    assert bad.exit_code == 2 and "above --max-params" in bad.stderr


def test_datasette_metadata_names_real_tables_and_its_queries_run(built):
    metadata = json.loads((REPO / "conf" / "datasette.json").read_text())
    (database,) = metadata["databases"]
    assert database == built.path.stem  # Datasette names a database after its file
    with sqlite3.connect(built.path) as db:
        columns = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
                   for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, settings in metadata["databases"][database]["tables"].items():
            named = set(settings.get("facets", [])) | {settings[k] for k in ("sort_desc", "label_column") if k in settings}
            assert named <= columns[table], table
        results = {}
        for name, query in metadata["databases"][database]["queries"].items():
            params = {p: "" for p in re.findall(r":(\w+)", query["sql"])}
            results[name] = db.execute(query["sql"], params).fetchall()
    assert len(results["leaderboard"]) == len(built.trained)
    assert dict((r[0], r[1]) for r in results["rejections_by_stage"]) == {**built.rejected_by_stage,
                                                                          "duplicate": built.duplicates}
    assert {r[0]: r[1] for r in results["strategies"]} == built.proposals_by_strategy
    assert results["llm_cost"][0][2] == built.llm_calls
