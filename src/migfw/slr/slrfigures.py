"""Database overlap: which databases returned the same study (after deduplication)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from migfw.slr.prisma import _save  # noqa: E402

MAX_COMBINATIONS = 25


def overlap_matrix(screened: pd.DataFrame, databases: list[str]) -> pd.DataFrame:
    """Studies (clusters) shared by each pair of databases; the diagonal is each one's total.

    Only relevant records count: the overlap of what the search kept, as in Table 6.
    """
    rel = screened[screened["relevant"]]
    sets = {db: set(rel.loc[rel["database"] == db, "cluster_id"]) for db in databases}
    data = [[len(sets[a] & sets[b]) for b in databases] for a in databases]
    return pd.DataFrame(data, index=databases, columns=databases)


def combinations(screened: pd.DataFrame) -> pd.DataFrame:
    """UpSet-style: how many studies each exact combination of databases returned."""
    rel = screened[screened["relevant"]]
    combos = rel.groupby("cluster_id")["database"].agg(lambda s: tuple(sorted(set(s))))
    counts = combos.value_counts()
    frame = pd.DataFrame({"databases": list(counts.index), "studies": counts.to_numpy()})
    frame["n_databases"] = frame["databases"].map(len)
    return frame.sort_values(["studies", "n_databases"], ascending=[False, False]).reset_index(
        drop=True
    )


@plt.style.context("default")  # independent of a global (seaborn) theme set elsewhere
def overlap_figure(
    screened: pd.DataFrame, databases: list[str], png: str | os.PathLike, svg: str | os.PathLike
) -> None:
    """Left: database x database shared-study heatmap. Right: UpSet-style combination bars."""
    present = [
        db for db in databases if (screened["relevant"] & (screened["database"] == db)).any()
    ]
    matrix = overlap_matrix(screened, present)
    combos = combinations(screened)
    n_combos = len(combos)
    combos = combos.head(MAX_COMBINATIONS)  # readable bars; the rest are the smallest
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 6.2), gridspec_kw={"width_ratios": [1, 1.25]})
    if present:
        values = matrix.to_numpy()
        ax1.imshow(values, cmap="Blues", vmin=0)
        ax1.set_xticks(range(len(present)), present, rotation=45, ha="right", fontsize=8)
        ax1.set_yticks(range(len(present)), present, fontsize=8)
        top = values.max() or 1
        for i in range(len(present)):
            for j in range(len(present)):
                ax1.text(
                    j,
                    i,
                    str(values[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if values[i, j] > top / 2 else "black",
                )
    ax1.set_title(
        "Relevant studies shared by two databases\n(diagonal: studies per database)", fontsize=10
    )
    # UpSet-style: bars on top, dot matrix below.
    ax2.axis("off")
    if len(combos):
        inner = ax2.inset_axes([0.0, 0.42, 1.0, 0.56])
        dots = ax2.inset_axes([0.0, 0.0, 1.0, 0.40], sharex=inner)
        x = np.arange(len(combos))
        inner.bar(x, combos["studies"], color="#3d6fa5")
        for xi, v in zip(x, combos["studies"], strict=True):
            inner.text(xi, v, str(v), ha="center", va="bottom", fontsize=7)
        inner.set_ylabel("studies")
        inner.tick_params(labelbottom=False)
        shown = (
            "" if n_combos <= MAX_COMBINATIONS else f" (largest {MAX_COMBINATIONS} of {n_combos})"
        )
        inner.set_title(f"Studies per exact combination of databases{shown}", fontsize=10)
        for yi, db in enumerate(present):
            dots.scatter(x, [yi] * len(x), color="#dddddd", s=25)
            members = [xi for xi, c in zip(x, combos["databases"], strict=True) if db in c]
            dots.scatter(members, [yi] * len(members), color="#222222", s=25)
        for xi, combo in zip(x, combos["databases"], strict=True):
            ys = [present.index(db) for db in combo if db in present]
            if len(ys) > 1:
                dots.plot([xi, xi], [min(ys), max(ys)], color="#222222", lw=1)
        dots.set_yticks(range(len(present)), present, fontsize=8)
        dots.set_xticks([])
        dots.set_ylim(-0.6, len(present) - 0.4)
        dots.invert_yaxis()
        for spine in ("top", "right", "bottom"):
            dots.spines[spine].set_visible(False)
        for spine in ("top", "right"):
            inner.spines[spine].set_visible(False)
    fig.tight_layout()
    _save(fig, png, svg)
