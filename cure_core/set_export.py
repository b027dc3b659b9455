"""A request's sets written as another project's training data, so that the Retrain of a model
trained elsewhere is trained with that project's own script on exactly the request's retain set.

Formats (each a JSON list of records, in sample order, as the project's preprocessing writes them):

- ``tallrec``: TALLRec's ``data/movie/*.json`` — ``{"instruction", "input", "output"}``. The
  instruction and input are the ``tallrec`` profile's prompt without the Alpaca wrapper that
  TALLRec's ``generate_prompt`` puts back around them, so its training sees the profile's prompt
  byte for byte.
- ``e2urec``: E2URec's ``data2json.py`` output — ``{"input", "output"}``. The input is the
  ``e2urec`` profile's prompt without its final newline (the profile ends with one so that a causal
  LM answers on the next token; E2URec's T5 reads the prompt without it).

Both write the answer as their data files do: the profile's answer word and a full stop ("Yes." /
"No."), whose first token is the answer the model is scored on.

The folder holds ``retain.json`` (train the Retrain on it), ``valid.json``, ``test.json``,
``forget.json`` (for audits) and ``manifest.json``: the request, the format and, per set, its
records' ratings in order, as ``USER:ITEM`` ids (the notation of ``cure forget --interactions``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cure_core.cache import atomic_directory
from cure_core.errors import CureError

if TYPE_CHECKING:  # the profiles import torch; loaded when a set is written
    from cure_core.data.dataset import RatingsDataset
    from cure_core.data.samples import Samples
    from cure_core.requests import ForgetRequest, RequestSets

SETS = ("retain", "valid", "test", "forget")
ANSWER_END = "."  # "Yes." / "No.", as TALLRec's and E2URec's data files write the answer
_ALPACA = re.compile(
    r"(?P<preamble>.*?)\n\n### Instruction:\n(?P<instruction>.*?)\n\n### Input:\n(?P<input>.*)\n\n### Response:\n",
    re.DOTALL,
)


def _tallrec(prompt: str) -> dict[str, str]:
    """The instruction and input of an Alpaca-wrapped prompt."""
    match = _ALPACA.fullmatch(prompt)
    if match is None:
        raise CureError(
            "the tallrec profile's prompt is not in Alpaca's Instruction/Input/Response layout",
            "restore cure_core/profiles/tallrec.toml from the release",
        )
    return {"instruction": match["instruction"], "input": match["input"]}


def _e2urec(prompt: str) -> dict[str, str]:
    return {"input": prompt.removesuffix("\n")}


@dataclass(frozen=True)
class ExportFormat:
    """How one project's records are written from a profile's prompts."""

    profile: str
    record: Callable[[str], dict[str, str]]  # the prompt's text fields; "output" is added


FORMATS: dict[str, ExportFormat] = {
    "tallrec": ExportFormat("tallrec", _tallrec),
    "e2urec": ExportFormat("e2urec", _e2urec),
}


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise CureError(f"unknown export format {name!r}", f"use one of: {', '.join(FORMATS)}")
    return name


class SetExporter:
    """Writes the sets of requests on ``dataset`` in one format. Built before anything is saved,
    so that a dataset the profile cannot write (e2urec needs the users' gender, age and
    occupation) fails before the request is."""

    def __init__(self, name: str, dataset: RatingsDataset, samples: Samples) -> None:
        from cure_core.profiles import PromptWriter, load_profile

        self.name = check_format(name)
        self.format = FORMATS[name]
        self.samples = samples
        self.writer = PromptWriter(load_profile(self.format.profile), dataset, samples)

    def records(self, indices: list[int]) -> list[dict[str, str]]:
        yes, no = self.writer.profile.yes, self.writer.profile.no
        return [
            {
                **self.format.record(self.writer.prompt(self.samples, i)),
                "output": (yes if self.samples.label[i] else no) + ANSWER_END,
            }
            for i in indices
        ]

    def write(self, request: ForgetRequest, sets: RequestSets, folder: Path) -> dict[str, int]:
        """Write every set into ``folder`` (all files or none); returns the records per set."""
        s = self.samples
        manifest: dict[str, object] = {
            "format": self.name,
            "profile": self.format.profile,
            "request": {"id": request.id, "description": request.description},
            "sets": {},
        }
        counts = {}
        with atomic_directory(folder) as tmp:
            for name in SETS:
                indices = [int(i) for i in getattr(sets, name)]
                (tmp / f"{name}.json").write_text(json.dumps(self.records(indices), indent=4) + "\n")
                manifest["sets"][name] = {  # type: ignore[index]
                    "file": f"{name}.json",
                    "records": len(indices),
                    "ratings": [f"{s.user_ids[s.user[i]]}:{s.item_ids[s.target[i]]}" for i in indices],
                }
                counts[name] = len(indices)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return counts
