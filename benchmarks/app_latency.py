"""Warm interaction latency of the app's analysis pages on the default model (server time).

Drives the pages with Streamlit's AppTest (the script rerun a browser interaction triggers,
without network or rendering): first every state once (cold: attributions, faithfulness,
groups and ablations are computed and cached), then the same interactions again (warm), each
timed. Needs the default model and its Retrain (trained on first use, ~12 min).

    .venv/bin/python benchmarks/app_latency.py [--rounds 3]

Ends with ``p95_interaction_ms=`` over the warm interactions (target ≤ 300).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "app"


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP / "pages" / name), default_timeout=900)
    for _ in range(1800):
        at.run()
        if not any("still training" in i.value for i in at.info):
            return at
        time.sleep(1)
    raise SystemExit("the default models did not finish training")


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(APP))

    circuits = open_page("1_Circuits.py")
    circuit_actions = {
        "top-n slider 50": lambda: circuits.slider(key="top_n").set_value(50).run(),
        "top-n slider 100": lambda: circuits.slider(key="top_n").set_value(100).run(),
        "view retain": lambda: circuits.radio(key="view").set_value("retain").run(),
        "view overlap": lambda: circuits.radio(key="view").set_value("overlap").run(),
        "view forget": lambda: circuits.radio(key="view").set_value("forget").run(),
    }
    groups = open_page("2_Module_groups.py")
    group_actions = {
        "ablate task-shared on": lambda: groups.toggle(key="ablate-task-shared").set_value(True).run(),
        "ablate task-shared off": lambda: groups.toggle(key="ablate-task-shared").set_value(False).run(),
    }
    actions = {**circuit_actions, **group_actions}
    cold = {name: timed(action) for name, action in actions.items()}
    warm: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(args.rounds):
        for name, action in actions.items():
            warm[name].append(timed(action))
    print(f"{'interaction':<26}{'cold ms':>10}{'warm ms (median)':>18}")
    for name in actions:
        print(f"{name:<26}{cold[name]:>10.0f}{statistics.median(warm[name]):>18.0f}")
    values = sorted(v for runs in warm.values() for v in runs)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    print(f"warm interactions: {len(values)}, median {statistics.median(values):.0f} ms")
    print(f"p95_interaction_ms={p95:.0f}")


if __name__ == "__main__":
    main()
