"""Plots of a stream run: rolling accuracy (or error) and loss over the stream, with drift points.
matplotlib is optional: pip install 'edgefdfa[plot]'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .errors import ConfigError

if TYPE_CHECKING:
    from .online import OnlineRun


def plot_runs(path: str, runs: dict[str, "OnlineRun"], title: str, marks: Sequence[tuple[int, str]] = (),
              ylabel: str = "rolling accuracy") -> None:
    """One line per run, drift points dotted in its colour; `marks` are (scored sample, label) lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'edgefdfa[plot]'") from None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name, run in runs.items():
        if not run.history:
            continue
        n, score, loss = zip(*run.history)
        top.plot(n, score, label=name)
        bottom.plot(n, loss, label=name)
        for event in run.events:
            if event["kind"] == "drift":
                top.axvline(event["scored"], color=top.lines[-1].get_color(), alpha=0.3, lw=1, ls=":")
    for x, label in marks:
        for ax in (top, bottom):
            ax.axvline(x, color="black", lw=1, ls="--")
        top.annotate(label, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, va="bottom", ha="right")
    top.set_ylabel(ylabel)
    bottom.set_ylabel("rolling loss")
    bottom.set_xlabel("samples scored (test-then-train)")
    top.set_title(title)
    top.legend(loc="lower left")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rounds(path: str, series: dict[str, list[tuple[int, float]]], title: str,
                ylabel: str = "accuracy") -> None:
    """One line per series of (round, value): a fleet's progress."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'edgefdfa[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, points in series.items():
        if points:
            ax.plot(*zip(*points), marker="o", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
