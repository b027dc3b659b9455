"""Shared fixtures: an isolated cache, synthetic data and a tiny trained model (seeded).

No test writes into the repository's ``cache/``: the whole session runs with ``CURE_CACHE`` set
to a temporary folder (module- and session-scoped fixtures included, and subprocesses inherit
it), every test gets a fresh one of its own, and the session fails if ``cache/`` changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cure_core.data import build_samples, make_synthetic
from cure_core.workspace import Workspace
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_RECIPE

REPO_CACHE = Path(__file__).resolve().parent.parent / "cache"  # where cure_core.cache writes without CURE_CACHE


def new_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty cache folder whose ML-100K ``downloads`` are shared by the whole session."""
    root = tmp_path_factory.mktemp("cache")
    shared = tmp_path_factory.getbasetemp() / "shared-downloads"
    shared.mkdir(exist_ok=True)
    (root / "downloads").symlink_to(shared, target_is_directory=True)
    return root


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return (
        {
            str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        if folder.is_dir()
        else {}
    )


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's cache (what fixtures wider than one test see), and the check that the
    repository's ``cache/`` is left exactly as it was."""
    before = listing(REPO_CACHE)
    root = new_cache(tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(root))
        yield root
    changed = sorted(set(before.items()) ^ set(listing(REPO_CACHE).items()))
    assert not changed, f"tests wrote into the repository's cache/: {sorted({name for name, _ in changed})[:10]}"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its own cache; ML-100K files are shared across the session."""
    root = new_cache(tmp_path_factory)
    monkeypatch.setenv("CURE_CACHE", str(root))
    torch.manual_seed(0)
    return root


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic(n_users=100, n_items=40, seed=0)


@pytest.fixture(scope="session")
def synthetic_samples(synthetic):
    return build_samples(synthetic)


@pytest.fixture(scope="module")
def grouplens_dir(tmp_path_factory, synthetic) -> str:
    """The synthetic data as a GroupLens folder (what ``--data`` reads), written once per module."""
    return str(write_grouplens(tmp_path_factory.mktemp("data") / "ml", synthetic))


@pytest.fixture(scope="session")
def user_checkpoints(tmp_path_factory, synthetic):
    """``{arch: (model folder, adapter folder)}``: tiny random gpt2 / llama / qwen2 (GQA)
    checkpoints with LoRA adapters, written once by the example maker on the synthetic titles.
    Tests only read them (a test that must change one copies it first)."""
    from cure_core.model.example_checkpoint import ARCHITECTURES, write_example

    root = tmp_path_factory.mktemp("user-checkpoints")
    out = {}
    for arch in ARCHITECTURES:
        write_example(arch, root / arch, synthetic, root / f"{arch}-lora")
        out[arch] = (root / arch, root / f"{arch}-lora")
    return out


@pytest.fixture
def tiny_ws(synthetic):
    return Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)


# --- determinism -------------------------------------------------------------------------------
# Tests assert invariants and equality with reference computations, never findings on tiny
# trained models; deterministic kernels make a repeated computation in one run bit-identical.


@pytest.fixture(scope="session", autouse=True)
def deterministic_torch():
    """Deterministic torch kernels for the whole session (they raise rather than silently vary)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs for it, should a GPU be present
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


# --- portability --------------------------------------------------------------------------------
# The modules whose tests compare floating-point results with a reference computation. `make test`
# runs them a second time under ATEN_CPU_CAPABILITY=default (and avx2 on an AVX-512 CPU), torch's
# kernels for another CPU, so that no tolerance holds on this CPU's kernels alone.
# (The distributed and LoRA comparisons run once: their processes share one machine's kernels.)
EXACTNESS_MODULES = frozenset(
    {
        "test_attribution",
        "test_checkpoints",
        "test_circuit",
        "test_engine_models",
        "test_graph",
        "test_projected_engine",
        "test_scoring",
    }
)

# The slowest tests, each a longer variant of what a faster test already checks: `make test-slow`
# runs them, `make test` leaves them out to keep CI within 15 minutes on two cores.
SLOW_TESTS = (
    "tests/test_user_unlearning.py::test_lora_unlearning_runs_every_method_on_a_llama_checkpoint",
    "tests/test_studies.py::test_every_study_runs_quick_on_the_text_recipe",
    "tests/test_set_export.py::test_tallrec_export_on_movielens",
    "tests/test_browser.py::test_lora_unlearning_of_the_text_model_in_a_real_browser",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in EXACTNESS_MODULES:
            item.add_marker(pytest.mark.exactness)
        if item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
