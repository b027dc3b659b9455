"""Report: the evidence studies (Pareto, deletion rate, stability, difficulty) from the cache.

UI only: the studies run with ``cure study <name>`` (they take minutes to an hour); this page
shows their saved results and offers the self-contained HTML report of ``cure report``.
"""

from __future__ import annotations

import streamlit as st
from state import picked_model

from cure_core.errors import CureError
from cure_core.studies import ABOUT
from cure_core.studies.report import build_report, flat_frame
from cure_core.studies.store import cached_models, figure, load_results, model_label

st.set_page_config(page_title="Report · CURE Studio", layout="wide")
st.title("Report")
picked_model()  # the studies below cover every model; the choice is kept for the other pages
st.caption(
    "Every number is shown next to Retrain. Strengths are chosen on a selection half of the forget set and "
    "the validation split, never on test."
)

results = load_results()
if not results:
    st.info("No study has finished yet. Run them from a terminal; each resumes from the cache when interrupted:")
    st.code(
        "\n".join(f".venv/bin/cure study {name}    # {about}" for name, about in ABOUT.items())
        + "\n.venv/bin/cure study pareto --quick    # minutes, for a first look",
        language="bash",
    )
    st.stop()

by_study: dict[str, list[dict]] = {}
for result in results:
    by_study.setdefault(result["study"], []).append(result)
missing = [name for name in ABOUT if name not in by_study]
if missing:
    st.caption(f"Not run yet: {', '.join(missing)} (`cure study <name>`).")

models = cached_models()
tabs = st.tabs([f"{name} ({len(runs)})" for name, runs in by_study.items()])
for tab, (name, runs) in zip(tabs, by_study.items(), strict=True):
    with tab:
        labels = [
            f"{r['key']} — {model_label(r, models)} — "
            f"{'quick' if r['settings'].get('quick_mode') else 'full'} settings, "
            f"{r.get('total_seconds', r['seconds']) / 60:.1f} min"
            for r in runs
        ]
        chosen = runs[st.selectbox("result", range(len(runs)), format_func=labels.__getitem__, key=f"pick-{name}")]
        st.markdown(f"**{ABOUT.get(name, name)}** — reproduce: `{chosen.get('command', '')}`")
        for line in chosen["summary"]:
            st.markdown(f"- {line}")
        for fig_name in chosen["figures"]:
            st.plotly_chart(figure(chosen, fig_name), width="stretch", key=f"fig-{name}-{chosen['key']}-{fig_name}")
        for table_name, records in chosen["tables"].items():
            with st.expander(f"table: {table_name} ({len(records)} rows)"):
                st.dataframe(flat_frame(records), width="stretch", hide_index=True)
        with st.expander("settings and versions"):
            st.json(
                {"settings": chosen["settings"], "context": chosen["context"], "versions": chosen["versions"]},
                expanded=False,
            )

st.subheader("Download")
try:
    st.download_button(
        "HTML report (self-contained: figures, tables, settings, versions)",
        build_report(results),
        file_name="cure-report.html",
        mime="text/html",
        key="dl_report",
    )
except CureError as err:
    st.error(str(err))
