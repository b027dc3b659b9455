"""The app in a real browser: `streamlit run` on loopback driven by playwright on Debian's Chromium.

Synthetic data and a tiny recipe (``CURE_RECIPE``) keep it to about a minute. Screenshots of
every page are saved under the test's temp dir (their paths are printed; ``pytest -s`` shows them).
Needs the ``chromium`` package (``make test`` installs it when run as root).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from cure_core.data.dataset import RatingsDataset
from cure_core.model_source import ENVIRONMENT
from docs.app_server import ServerDidNotStart, free_port, serving
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_RECIPE

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SLOW_MS = 180_000  # the first visit trains the tiny models and attributes; generous for a loaded CI machine


def listening_hosts(port: int) -> set[str]:
    """The IPv4 addresses a socket of this machine listens on at ``port`` (``/proc/net/tcp``)."""
    hosts = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            hosts.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return hosts


def _serve(root: Path, **env: str) -> Iterator[str]:
    """`cure app` on a free port with ``env`` added (checked to listen on loopback only, its
    default); yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "cure_core.cli", "app", "--port", str(port)]
    log = root / "streamlit.log"
    base = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT.values()}  # no CURE_MODEL of the caller's
    try:
        with serving(cmd, port, {**base, "OMP_NUM_THREADS": "1", **env}, log, attempts=120) as url:
            assert listening_hosts(port) == {"127.0.0.1"}, listening_hosts(port)
            yield url
    except ServerDidNotStart:
        pytest.fail(f"streamlit did not start; log: {log.read_text()[-2000:]}")


def _serve_synthetic(root: Path, synthetic: RatingsDataset, **env: str) -> Iterator[str]:
    """:func:`_serve` on the synthetic ratings written under ``root``, with ``root/cache`` as its cache."""
    yield from _serve(
        root, CURE_DATA=str(write_grouplens(root / "ml", synthetic)), CURE_CACHE=str(root / "cache"), **env
    )


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, synthetic) -> Iterator[str]:
    """A Streamlit server on synthetic data with the tiny recipe and its own cache."""
    root = tmp_path_factory.mktemp("browser-app")
    yield from _serve_synthetic(root, synthetic, CURE_RECIPE=TINY_RECIPE.model_dump_json())


@pytest.fixture(scope="module")
def user_app_url(tmp_path_factory, synthetic, user_checkpoints) -> Iterator[str]:
    """A Streamlit server on a tiny Qwen2 checkpoint (grouped-query attention) with its LoRA
    adapter, the compact profile and no Retrain: what `cure app --model ... --adapter ...` starts."""
    root = tmp_path_factory.mktemp("browser-user-app")
    model, adapter = user_checkpoints["qwen2"]
    yield from _serve_synthetic(
        root,
        synthetic,
        CURE_MODEL=str(model),
        CURE_ADAPTER=str(adapter),
        CURE_PROFILE="compact",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Chromium is missing: install it with `apt-get update && apt-get install -y chromium` (as "
            "root), or run `make test` as root"
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def _metric(page, label: str) -> str:
    """The value of the st.metric with this label."""
    box = page.get_by_test_id("stMetric").filter(has_text=label).first
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def _open(page, name: str) -> None:
    """Go to a page through the sidebar, as a person does (a full reload would start a new session)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()


def _no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").first.inner_text()


def test_two_browser_sessions_computing_at_once_both_finish_and_agree(app_url, browser):
    """Two browser sessions ask for hooked runs on the one shared model at the same moment (the
    Circuits page attributes and measures faithfulness, Module groups attributes its control
    draws and ablates): both pages finish without an error, and the faithfulness the first one
    shows is the one a third session shows afterwards."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(3)]
    circuits, groups, later = (c.new_page() for c in contexts)
    circuits.goto(f"{app_url}/Circuits", wait_until="commit")
    groups.goto(f"{app_url}/Module_groups", wait_until="commit")
    circuits.get_by_text("faithfulness F on forget").wait_for(timeout=SLOW_MS)
    groups.get_by_text("separability").first.wait_for(timeout=SLOW_MS)
    for page in (circuits, groups):
        _no_exception(page)
    faithfulness = float(_metric(circuits, "faithfulness F on forget"))
    later.goto(f"{app_url}/Circuits")
    later.get_by_text("faithfulness F on forget").wait_for(timeout=SLOW_MS)
    assert float(_metric(later, "faithfulness F on forget")) == faithfulness
    for context in contexts:
        context.close()


def test_every_page_in_a_real_browser(app_url, browser, tmp_path):
    shots: list[Path] = []

    def shot(page, name: str) -> None:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    session_a = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = session_a.new_page()

    # Home: the dataset, the default request, then the models once the background job is done.
    page.goto(app_url)
    page.get_by_text("Memorization gap on the default request").wait_for(timeout=SLOW_MS)
    page.get_by_text("Build a forget request").wait_for()
    _no_exception(page)
    shot(page, "home")

    # Circuits: moving the top-n slider changes the selection and its faithfulness is shown.
    _open(page, "Circuits")
    page.get_by_text("faithfulness F on forget").wait_for(timeout=SLOW_MS)
    page.locator(".js-plotly-plot").first.wait_for(timeout=SLOW_MS)
    before = _metric(page, "edges / nodes")
    slider = page.get_by_role("slider", name="edges kept")
    slider.focus()
    for _ in range(max(1, int(slider.get_attribute("aria-valuetext")) - 5)):
        slider.press("ArrowLeft")
    page.wait_for_function(
        "before => [...document.querySelectorAll('[data-testid=stMetric]')].some(m => "
        "m.innerText.includes('edges / nodes') && !m.innerText.includes(before))",
        arg=before,
        timeout=SLOW_MS,
    )
    assert _metric(page, "edges / nodes") != before
    float(_metric(page, "faithfulness F on forget"))  # a number, not an error
    _no_exception(page)
    shot(page, "circuits")

    # Module groups: toggling a group ablates it (the ablation table's margin change leaves 0).
    _open(page, "Module groups")
    page.get_by_text("Ablate a group").wait_for(timeout=SLOW_MS)
    page.get_by_text("separability").first.wait_for(timeout=SLOW_MS)
    page.get_by_role("switch", name="task-shared").check(force=True)
    page.get_by_text("Running the ablated model").wait_for(state="hidden", timeout=SLOW_MS)
    page.wait_for_timeout(500)
    _no_exception(page)
    assert page.get_by_role("switch", name="task-shared").is_checked()
    shot(page, "module-groups")

    # Unlearning: a short GA run fills the results table next to Original and Retrain.
    _open(page, "Unlearning")
    page.get_by_text("No run in this session yet").wait_for(timeout=SLOW_MS)
    steps = page.get_by_label("steps", exact=True)
    steps.fill("5")
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Last run:").wait_for(timeout=SLOW_MS)
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for(timeout=SLOW_MS)
    _no_exception(page)
    shot(page, "unlearning")
    assert page.get_by_text("Retrain", exact=False).count() > 0

    # Report: no study in this fresh cache, so the page says which commands produce them.
    _open(page, "Report")
    page.get_by_text("No study has finished yet").wait_for(timeout=SLOW_MS)
    _no_exception(page)
    shot(page, "report")

    # The session keeps its runs across pages; a second browser session has its own (none).
    _open(page, "Home")
    page.get_by_text("Build a forget request").wait_for(timeout=SLOW_MS)
    _open(page, "Unlearning")
    page.get_by_text("Last run:").wait_for(timeout=SLOW_MS)
    session_b = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = session_b.new_page()
    other.goto(f"{app_url}/Unlearning")
    other.get_by_text("No run in this session yet").wait_for(timeout=SLOW_MS)
    assert other.get_by_text("Last run:").count() == 0
    shot(other, "second-session-unlearning")

    session_a.close()
    session_b.close()
    print("screenshots:", *map(str, shots), sep="\n  ")
    assert all(p.stat().st_size > 10_000 for p in shots)


def test_every_page_on_a_user_checkpoint_in_a_real_browser(user_app_url, browser, tmp_path):
    """Each page opens on a user's checkpoint without an exception: Home's model card and the
    missing Retrain, the note of Module groups, Unlearning's form (LoRA switch), Circuits up to its Start button
    (attribution itself is covered by the AppTest tests, on fewer prompts)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(user_app_url)
    page.get_by_text("what was loaded").wait_for(timeout=SLOW_MS)
    page.get_by_text("Qwen2ForCausalLM").first.wait_for(state="attached")  # a dataframe cell (drawn on a canvas)
    assert page.get_by_text("Retrain: not given").count() > 0
    page.get_by_text("Build a forget request").wait_for()
    _no_exception(page)
    page.screenshot(path=str(tmp_path / "user-home.png"), full_page=True)
    checks = {
        "Circuits": "attributes every edge of your model",
        "Module groups": "no user or item embedding rows are grouped",
        "Unlearning": "train a LoRA adapter instead of the full weights",
        "Report": "No study has finished yet",
    }
    for name, text in checks.items():
        _open(page, name)
        page.get_by_text(text, exact=False).first.wait_for(timeout=SLOW_MS)
        if name in ("Circuits", "Module groups"):
            page.get_by_role("button", name="Start").wait_for(timeout=SLOW_MS)  # the script has run to its end
        _no_exception(page)
        page.screenshot(path=str(tmp_path / f"user-{name.replace(' ', '-').lower()}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="module")
def text_app_url(tmp_path_factory, synthetic) -> Iterator[str]:
    """A Streamlit server on the text model trained here (a tiny text recipe, ``CURE_RECIPE``)."""
    from tests.tiny_recipes import TINY_TEXT

    root = tmp_path_factory.mktemp("browser-text-app")
    yield from _serve_synthetic(root, synthetic, CURE_RECIPE=TINY_TEXT.model_dump_json())


def test_lora_unlearning_of_the_text_model_in_a_real_browser(text_app_url, browser, tmp_path):
    """On the text model trained here the Unlearning page defaults to LoRA; a short LoRA run
    fills the results table, which names the model, the mode (LoRA r=8) and the trainable parameters."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{text_app_url}/Unlearning")
    page.get_by_text("No run in this session yet").wait_for(timeout=SLOW_MS)
    assert page.get_by_role("checkbox", name="train a LoRA adapter instead of the full weights").is_checked()
    page.get_by_label("steps", exact=True).fill("3")
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Last run:").wait_for(timeout=SLOW_MS)
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for(timeout=SLOW_MS)
    _no_exception(page)
    page.screenshot(path=str(tmp_path / "text-unlearning.png"), full_page=True)
    # the dataframe draws on a canvas; its cells are mirrored in an accessible table
    page.get_by_text("LoRA r=8").first.wait_for(state="attached", timeout=SLOW_MS)
    page.get_by_text("Text model (trained here)").first.wait_for(state="attached")
    context.close()
