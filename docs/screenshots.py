"""Regenerate the app's pictures in ``docs/img`` (``make screenshots``).

Starts ``streamlit run app/Home.py`` on loopback — on the default model unless ``--recipe-json``
or the ``CURE_*`` variables say otherwise, with the cache of ``CURE_CACHE`` (default ``cache/``);
a fresh cache first trains the default model and its Retrain — then drives Debian's Chromium
through playwright over every page: Home, Circuits, Module groups, Unlearning (after a short
run), Report. Each page is captured once its content has rendered, one device pixel per CSS pixel
in a 1280×1100 window, and stored as a 256-colour PNG, so the pictures stay small enough to keep
in git.

    python docs/screenshots.py [--out docs/img] [--recipe-json JSON] [--steps 20]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app_server import ROOT, ServerDidNotStart, free_port, serving
from PIL import Image
from playwright.sync_api import Page, sync_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FIRST_RUN_MS = 3_600_000  # a fresh cache trains two models and attributes them on the first visits
VIEWPORT = {"width": 1280, "height": 1100}  # Streamlit scrolls inside the page: what shows is what is kept


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """``streamlit run app/Home.py`` on a free loopback port; yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "Home.py"), "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    cmd += ["--client.toolbarMode", "minimal"]  # no "Deploy" button in the pictures
    try:
        with serving(cmd, port, env, log, attempts=240) as url:
            yield url
    except ServerDidNotStart as error:
        raise SystemExit(str(error)) from None


def save_small(png: bytes, path: Path) -> int:
    """The screenshot stored as a 256-colour PNG; returns its size in bytes."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


def open_page(page: Page, name: str) -> None:
    """Go to a page through the sidebar (a reload would start a new browser session)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()


def settled(page: Page) -> None:
    """Wait until no element is still running and the charts have drawn, and no error shows."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]') && "
        "![...document.querySelectorAll('[data-testid=stSpinner]')].length",
        timeout=FIRST_RUN_MS,
    )
    page.wait_for_timeout(1500)  # plotly's transitions
    errors = page.get_by_test_id("stException")
    if errors.count():
        raise SystemExit(f"the page shows an error: {errors.first.inner_text()[:500]}")


def tour(page: Page, url: str, steps: int) -> Iterator[str]:
    """Each picture's name after the page it shows has rendered."""
    page.goto(url)
    page.get_by_text("Memorization gap on the default request").wait_for(timeout=FIRST_RUN_MS)
    page.get_by_text("Build a forget request").wait_for(timeout=FIRST_RUN_MS)
    yield "home"

    open_page(page, "Circuits")
    page.get_by_text("faithfulness F on forget").wait_for(timeout=FIRST_RUN_MS)
    page.locator(".js-plotly-plot").first.wait_for(timeout=FIRST_RUN_MS)
    yield "circuits"

    open_page(page, "Module groups")
    page.get_by_text("Ablate a group").wait_for(timeout=FIRST_RUN_MS)
    page.get_by_text("separability").first.wait_for(timeout=FIRST_RUN_MS)
    page.locator(".js-plotly-plot").first.wait_for(timeout=FIRST_RUN_MS)
    yield "module_groups"

    open_page(page, "Unlearning")
    page.get_by_label("steps", exact=True).wait_for(timeout=FIRST_RUN_MS)
    page.get_by_label("steps", exact=True).fill(str(steps))
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Last run:").wait_for(timeout=FIRST_RUN_MS)
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=FIRST_RUN_MS)
    yield "unlearning"

    open_page(page, "Report")
    done = page.get_by_text("No study has finished yet").or_(page.get_by_role("heading", name="Download"))
    done.first.wait_for(timeout=FIRST_RUN_MS)
    yield "report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNGs (docs/img)")
    parser.add_argument("--recipe-json", help="recipe overrides of the model shown (default: the default model)")
    parser.add_argument("--steps", type=int, default=20, help="steps of the unlearning run shown (default 20)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is missing: install Debian's package (`make chromium` as root)")
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ) | ({"CURE_RECIPE": args.recipe_json} if args.recipe_json else {})
    log = args.out / "streamlit.log"
    total = 0
    with serve(env, log) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport=VIEWPORT, device_scale_factor=1).new_page()
        began = time.monotonic()
        for name in tour(page, url, args.steps):
            settled(page)
            size = save_small(page.screenshot(), args.out / f"{name}.png")
            total += size
            print(f"{name}.png: {size / 1024:.0f} KiB after {time.monotonic() - began:.0f} s", flush=True)
        browser.close()
    log.unlink()
    print(f"written: {args.out} ({total / 1024:.0f} KiB in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
