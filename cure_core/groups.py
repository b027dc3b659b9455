"""Module groups (method.md §6): forget-specific, retain-specific, task-shared, outside.

Heads and MLPs are grouped from attribution node scores on the forget set, the retain set and
several matched control sets (disjoint draws, :mod:`cure_core.controls`):

1. importance on a set, I: per batch, |node score| of every head and MLP as a share of the
   batch's total; the **median** over batches (one batch can swing a module 5×); renormalised;
2. "in the set's circuit": I ≥ τ, with τ from the threshold rule — ``share`` (the fewest
   modules holding that share of the importance), ``quantile`` or ``absolute``;
3. the null: for each control draw c, I_c − I_r; a module's null is the 95th percentile of
   |I_c − I_r| over the draws. A forget-vs-retain difference counts only beyond it;
4. groups: forget-specific = in the forget circuit, not in the retain circuit, and I_f − I_r
   above the null; retain-specific likewise the other way round; task-shared = in either
   circuit otherwise (a one-sided module whose difference does not beat noise cannot be told
   apart, so it is treated as shared); outside = the rest.

Key/value heads (grouped-query attention, ``a{l}.kv{g}``): one K/V projection is read by H/G
query heads, and its parameters (``cure_core.modules``) get one update rule. Its row (kind
``kv head``; ``head`` holds g) carries the sums of its reader heads' importances (and the
difference and null of those sums), and its group follows its reader heads that are in a
circuit (not outside): if they all share one group, that group; if they disagree, task-shared
(the conflict-free rule serves both sides); if none is in a circuit, outside. Without
grouped-query attention a head owns its own k and v and there are no such rows.

Embedding rows (``u:<id>``, ``i:<id>``) are grouped by use instead: a row whose occurrences in
training prompts fall at least ``embedding_share`` in the forget set is forget-specific (for a
user request: the forgotten users' own tokens); every other row is outside.

Separability of the whole split (:mod:`cure_core.separability`): the spread (standard deviation
over heads and MLPs) of log(I_f / I_r), divided by the mean spread of log(I_c / I_r) over the
control draws; and beside it the importance-weighted version, each module weighted by
(I_f + I_r) / 2 (a control draw by (I_c + I_r) / 2), so that modules with hardly any importance
do not dominate. Near 1 means the forget set differs from the retain set no more than random
matched sets do. Both, and the count of significant modules, are over heads and MLPs only:
key/value rows are sums of head rows, not further evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from analysis.attribution import Attribution
from analysis.circuit import share_count
from analysis.graph import GraphShape
from cure_core.circuits import AttributionSettings, CircuitContext, get_attribution
from cure_core.controls import max_control_draws
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.progress import ProgressFn
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.separability import beyond_noise, separability, weighted_beyond_noise

GROUPS = ("forget-specific", "retain-specific", "task-shared", "outside")
CIRCUIT_KINDS = ("head", "kv head", "mlp")  # grouped from attribution; the rest are embedding rows
EMBEDDING_KINDS = ("user row", "item row")
Group = Literal["forget-specific", "retain-specific", "task-shared", "outside"]


class GroupSettings(BaseModel):
    """How modules are grouped (part of a run's cache key)."""

    model_config = ConfigDict(extra="forbid")

    threshold_rule: Literal["share", "quantile", "absolute"] = Field(
        "share", description="how 'in a set's circuit' is decided"
    )
    threshold: float = Field(
        0.8, description="share of importance or quantile (both in (0, 1]), or absolute importance (at least 0)"
    )
    null_draws: int = Field(5, ge=1, le=50, description="matched control draws for the noise floor")
    null_quantile: float = Field(
        0.95, gt=0, le=1, description="quantile of |I_c - I_r| over the draws that a difference must beat"
    )
    embedding_rows: bool = Field(True, description="also group user/item embedding rows (by use)")
    embedding_share: float = Field(
        0.9, gt=0, le=1, description="share of a row's uses in the forget set that makes it forget-specific"
    )

    @field_validator("threshold")
    @classmethod
    def _threshold_fits_rule(cls, value: float, info: ValidationInfo) -> float:
        rule = info.data.get("threshold_rule", "share")
        if rule == "absolute" and not value >= 0:
            raise ValueError("an absolute importance threshold must be at least 0")
        if rule != "absolute" and not 0 < value <= 1:
            raise ValueError(f"the {rule} rule needs a threshold in (0, 1]")
        return value


def importance(attribution: Attribution) -> np.ndarray:
    """``[n_src - 1]`` robust importance of every head and MLP (``input`` excluded), sum 1."""
    per_batch = np.abs(attribution.batch_scores.sum(axis=2)[:, 1:])
    shares = per_batch / np.maximum(per_batch.sum(axis=1, keepdims=True), 1e-30)
    median = np.median(shares, axis=0)
    return median / max(median.sum(), 1e-30)


def in_circuit(values: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    if rule == "absolute":
        return values >= threshold
    if rule == "quantile":
        return values >= np.quantile(values, min(threshold, 1.0))
    order = np.argsort(-values, kind="stable")
    keep = np.zeros(len(values), dtype=bool)
    keep[order[: share_count(values[order], min(threshold, 1.0))]] = True
    return keep


@dataclass
class ModuleGroups:
    """Every module with its scores and group, the separability of the split, and warnings."""

    table: (
        pd.DataFrame
    )  # module, kind, layer, head, importance_forget, importance_retain, difference, null, significant, group
    separability: dict[str, float]
    settings: GroupSettings
    warnings: list[str]

    def members(self, group: str) -> list[str]:
        return self.table.loc[self.table["group"] == group, "module"].tolist()

    def sizes(self) -> pd.DataFrame:
        """Group sizes by module kind."""
        counts = self.table.groupby(["group", "kind"]).size().unstack(fill_value=0)
        return counts.reindex(list(GROUPS), fill_value=0)

    @property
    def beyond_noise(self) -> bool:
        """Whether the forget/retain log-ratio spread exceeds the control spreads' mean by more
        than two of their standard deviations (relative): the separability verdict."""
        sep = self.separability
        return beyond_noise(sep["separability"], sep["spread_control_mean"], sep["spread_control_std"])

    @property
    def beyond_noise_weighted(self) -> bool | None:
        """The same verdict on the importance-weighted separability; None when the
        separability was computed before the weighted one existed."""
        return weighted_beyond_noise(self.separability)

    @property
    def kinds(self) -> list[str]:
        return sorted(self.table["kind"].unique())

    def without_circuits(self) -> ModuleGroups:
        """The same groups with every head, key/value head and MLP task-shared: what is left of
        CURE when the circuits decide nothing (embedding rows keep their grouping by use)."""
        table = self.table.copy()
        table.loc[table["kind"].isin(CIRCUIT_KINDS), "group"] = "task-shared"
        return self._regrouped(table, "ablation: heads and MLPs are all task-shared, whatever their circuits say")

    def shuffled(self, seed: int) -> ModuleGroups:
        """The same number of heads, key/value heads and MLPs in each group, drawn at random
        (``seed``): the control for whether the circuits chose *which* modules matter, beyond how
        many of each kind are updated (embedding rows keep their grouping by use)."""
        table = self.table.copy()
        rng = np.random.default_rng(seed)
        for kind in CIRCUIT_KINDS:
            rows = table.index[table["kind"] == kind]
            table.loc[rows, "group"] = rng.permutation(table.loc[rows, "group"].to_numpy())
        return self._regrouped(
            table, f"control: heads and MLPs drawn at random into groups of the circuits' sizes (seed {seed})"
        )

    def _regrouped(self, table: pd.DataFrame, note: str) -> ModuleGroups:
        """These groups with ``table``'s group column instead, and ``note`` among the warnings."""
        return ModuleGroups(table, self.separability, self.settings, list(self.warnings)).with_note(note)

    def with_note(self, *notes: str) -> ModuleGroups:
        """The same groups with ``notes`` added to the warnings."""
        return ModuleGroups(
            table=self.table, separability=self.separability, settings=self.settings, warnings=[*self.warnings, *notes]
        )


def group_modules(
    shape: GraphShape,
    forget: Attribution,
    retain: Attribution,
    controls: list[Attribution],
    settings: GroupSettings,
    embedding_usage: pd.DataFrame | None = None,
) -> ModuleGroups:
    """Group heads and MLPs from attributions, and embedding rows from ``embedding_usage``
    (columns ``module``, ``forget``, ``retain`` occurrence counts), see the module docstring."""
    i_f, i_r = importance(forget), importance(retain)
    i_c = np.stack([importance(c) for c in controls])
    difference = i_f - i_r
    null = np.quantile(np.abs(i_c - i_r), settings.null_quantile, axis=0)
    significant = np.abs(difference) > null
    imp_f = in_circuit(i_f, settings.threshold_rule, settings.threshold)
    imp_r = in_circuit(i_r, settings.threshold_rule, settings.threshold)
    group = np.full(len(i_f), "outside", dtype=object)
    group[imp_f | imp_r] = "task-shared"
    group[imp_f & ~imp_r & significant & (difference > 0)] = "forget-specific"
    group[imp_r & ~imp_f & significant & (difference < 0)] = "retain-specific"
    names = shape.src_names[1:]
    layer_head = [shape.module_layer_head(i) for i in range(1, shape.n_src)]
    table = pd.DataFrame(
        {
            "module": names,
            "kind": ["head" if h is not None else "mlp" for _, h in layer_head],
            "layer": [layer for layer, _ in layer_head],
            "head": [h for _, h in layer_head],
            "importance_forget": i_f,
            "importance_retain": i_r,
            "difference": difference,
            "null": null,
            "significant": significant,
            "group": group,
        }
    )
    if shape.grouped:
        table = pd.concat([table, _kv_rows(shape, table, i_c, settings)], ignore_index=True)
    if settings.embedding_rows and embedding_usage is not None and len(embedding_usage):
        share = embedding_usage["forget"] / (embedding_usage["forget"] + embedding_usage["retain"]).clip(lower=1)
        rows = pd.DataFrame(
            {
                "module": embedding_usage["module"],
                "kind": np.where(embedding_usage["module"].str.startswith("u:"), "user row", "item row"),
                "importance_forget": share,
                "importance_retain": 1 - share,
                "difference": 2 * share - 1,
                "significant": share >= settings.embedding_share,
                "group": np.where(
                    (share >= settings.embedding_share) & (embedding_usage["forget"] > 0), "forget-specific", "outside"
                ),
            }
        )
        table = pd.concat([table, rows[rows["group"] != "outside"]], ignore_index=True)
    split = {
        **separability(i_f, i_r, i_c),
        "significant_modules": int(significant.sum()),
        "control_draws": len(controls),
    }
    warnings = _empty_group_warnings(table, settings)
    return ModuleGroups(table=table, separability=split, settings=settings, warnings=warnings)


def kv_group(reader_groups: list[str]) -> str:
    """The group of a key/value head from its reader heads' groups (module docstring)."""
    in_circuit_groups = {g for g in reader_groups if g != "outside"}
    if not in_circuit_groups:
        return "outside"
    return in_circuit_groups.pop() if len(in_circuit_groups) == 1 else "task-shared"


def _kv_rows(shape: GraphShape, heads: pd.DataFrame, i_c: np.ndarray, settings: GroupSettings) -> pd.DataFrame:
    """One row per key/value head ``a{l}.kv{g}``: sums over its reader heads, group by
    :func:`kv_group`. ``heads`` is the head/MLP table (row i = source index i + 1)."""
    rows = []
    for layer in range(shape.n_layers):
        for kv in range(shape.kv_heads):
            readers = [shape.head_src(layer, h) - 1 for h in range(shape.n_heads) if shape.kv_head_of(h) == kv]
            i_f = float(heads["importance_forget"].iloc[readers].sum())
            i_r = float(heads["importance_retain"].iloc[readers].sum())
            null = float(np.quantile(np.abs(i_c[:, readers].sum(axis=1) - i_r), settings.null_quantile))
            rows.append(
                {
                    "module": f"a{layer}.kv{kv}",
                    "kind": "kv head",
                    "layer": layer,
                    "head": kv,
                    "importance_forget": i_f,
                    "importance_retain": i_r,
                    "difference": i_f - i_r,
                    "null": null,
                    "significant": abs(i_f - i_r) > null,
                    "group": kv_group(heads["group"].iloc[readers].tolist()),
                }
            )
    return pd.DataFrame(rows)


def _empty_group_warnings(table: pd.DataFrame, settings: GroupSettings) -> list[str]:
    counts = table["group"].value_counts()
    notes = []
    if counts.get("forget-specific", 0) == 0:
        notes.append(
            "no module is forget-specific beyond the noise floor: CURE-style unlearning falls back to the "
            "task-shared rule "
            "(and, with no shared module either, changes nothing); try another corruption or a lower threshold"
        )
    if counts.get("retain-specific", 0) == 0:
        notes.append("no module is retain-specific beyond the noise floor: the retain rule applies to nothing")
    if counts.get("task-shared", 0) == 0:
        notes.append(
            f"no module is task-shared with threshold {settings.threshold_rule} {settings.threshold}: the "
            "shared rule applies to nothing"
        )
    return notes


def embedding_usage(
    samples: Samples, sets: RequestSets, vocab_tokens: list[str], known_users: np.ndarray | None
) -> pd.DataFrame:
    """Occurrences of every user and item token in forget and retain training prompts."""
    counts = {}
    for name, idx in (("forget", sets.forget), ("retain", sets.retain)):
        users = samples.user[idx]
        if known_users is not None:
            users = users[np.isin(users, known_users)]
        user_counts = np.bincount(users, minlength=len(samples.user_ids))
        items = np.concatenate([samples.history[idx].ravel(), samples.target[idx]])
        item_counts = np.bincount(items, minlength=len(samples.item_ids))
        counts[name] = np.concatenate([user_counts, item_counts])
    names = [f"u:{u}" for u in samples.user_ids] + [f"i:{i}" for i in samples.item_ids]
    frame = pd.DataFrame({"module": names, "forget": counts["forget"], "retain": counts["retain"]})
    frame = frame[frame["module"].isin(set(vocab_tokens))]
    return frame[(frame["forget"] + frame["retain"]) > 0].reset_index(drop=True)


def fitting_group_settings(request: ForgetRequest, samples: Samples, sets: RequestSets) -> GroupSettings:
    """The default settings, with as many matched control draws as the retain set holds when
    that is fewer than the default (20% of users: 4)."""
    default = GroupSettings()
    fit = max_control_draws(request, samples, sets)
    if fit < 2:
        raise CureError(
            f"request {request.id} leaves room for {fit} disjoint matched control draw(s)",
            "module grouping needs at least 2; use a smaller request",
        )
    return default if fit >= default.null_draws else default.model_copy(update={"null_draws": fit})


def default_corruption(request: ForgetRequest) -> str:
    """The corruption that separated this kind of request on the prototype (method.md §6):
    the target-item swap for item requests, the history swap otherwise."""
    return "target" if request.kind == "item" else "history"


def groups_for_request(
    ctx: CircuitContext,
    attribution: AttributionSettings,
    settings: GroupSettings,
    progress: ProgressFn | None = None,
    quiet: bool = False,
    force: bool = False,
) -> ModuleGroups:
    """Attribute the forget, retain and ``null_draws`` control sets (cached) and group."""
    names = ["forget", "retain"] + [f"control-{k}" for k in range(settings.null_draws)]
    results = {}
    for i, name in enumerate(names):
        results[name] = get_attribution(ctx, name, attribution, quiet=quiet, force=force)
        if progress is not None:
            progress(i + 1, len(names), {"set": name})
    usage = None
    rows = ctx.rec.capabilities.embedding_rows
    if settings.embedding_rows and rows:
        usage = embedding_usage(ctx.samples, ctx.sets, ctx.rec.encoder.vocab.tokens, ctx.rec.known_users)  # type: ignore[attr-defined]
    groups = group_modules(
        results["forget"].shape, results["forget"], results["retain"], [results[n] for n in names[2:]], settings, usage
    )
    if settings.embedding_rows and not rows:
        groups = groups.with_note(NO_ROWS_NOTE)
    return groups


NO_ROWS_NOTE = (
    "no user or item embedding rows are grouped: a text model writes users and titles as ordinary words, whose "
    "token embeddings every user shares, so no embedding row belongs to the forget set alone"
)
