"""How close each rule's update is to the exact gradient, and how noisy it is, by width, depth and alpha.

For one network (MNIST-subset inputs, fixed weights) every rule fills `net.grad` through its public
`Rule.gradient`; BP's is the exact gradient. Over the hidden layers' parameters (the part the rules
estimate: the output layer is exact for DFA, FG-A and FDFA) the tool reports, per rule:
- cosine: mean over held-out samples and perturbation draws of cos(update, exact gradient);
- variance: mean over samples of E|g - E g|^2 / |g_exact|^2 across perturbation draws (0 for the
  rules that draw none), so rules and sizes compare on one dimensionless scale.
FDFA's estimate is its feedback B after a warm-up of min(3 / alpha, cap) samples at the fixed weights
(`deltas` then `commit`, as the learner does); each of its draws is an independent warm-up.

    python tools/gradient_quality.py [--smoke] [--out bench/results]

Writes gradient_quality.json and gradient_quality_{width,depth,alpha}.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: one core each, on a shared machine
import numpy as np  # noqa: E402

from edgefdfa import datasets  # noqa: E402
from edgefdfa.learner import LearnerConfig  # noqa: E402
from edgefdfa.losses import LOSSES  # noqa: E402
from edgefdfa.network import Network, Workspace  # noqa: E402
from edgefdfa.rules import RULES  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
ORDER = ["bp", "dfa", "fg-w", "fg-a", "fdfa"]
# one colour per rule in every panel
COLORS = dict(zip(ORDER, ["black", "tab:orange", "tab:green", "tab:red", "tab:blue"]))
FULL = dict(widths=[64, 128, 256, 512, 1024], depths=[1, 2, 3, 4], alphas=[0.001, 0.003, 0.01, 0.03, 0.1, 1.0],
            width=256, depth=2, alpha=0.003, draws=8, samples=16, warmup_cap=2000)
SMOKE = dict(widths=[8, 16], depths=[1, 2], alphas=[0.1, 1.0], width=16, depth=2, alpha=0.1,
             draws=3, samples=2, warmup_cap=20)


class Probe:
    """One network at fixed weights and the samples its gradients are taken at."""

    def __init__(self, width: int, depth: int, X_warm: np.ndarray, y_warm: np.ndarray,
                 X_eval: np.ndarray, y_eval: np.ndarray, seed: int = 0):
        self.sizes = (X_warm.shape[1],) + (width,) * depth + (10,)
        self.acts = ("relu",) * depth + ("identity",)
        self.net = Network(self.sizes, self.acts)
        self.net.init_weights(np.random.default_rng(seed))
        self.bt = Workspace(self.net, 1).batch(1)
        self.loss = LOSSES["ce"]()
        self.X_warm, self.y_warm, self.X_eval, self.y_eval = X_warm, y_warm, X_eval, y_eval
        self.n_hidden_params = sum(W.size + b.size for W, b in zip(self.net.W[:-1], self.net.b[:-1]))

    def rule(self, name: str, seed: int, alpha: float):
        cfg = LearnerConfig(self.sizes, self.acts, rule=name, alpha=alpha, batch_size=1, seed=seed).resolved()
        return RULES[name](self.net, self.loss, np.random.default_rng(seed), cfg)

    def grad(self, rule, i: int) -> np.ndarray:
        """The rule's update for eval sample i over the hidden layers, as one vector (a copy)."""
        self.bt.x[0] = self.X_eval[i]
        rule.gradient(self.bt, self.y_eval[i:i + 1])
        return np.concatenate([g.reshape(-1) for pair in zip(self.net.gW[:-1], self.net.gb[:-1]) for g in pair])

    def warm_up(self, rule, steps: int) -> None:
        """Let a rule with learned feedback (FDFA) estimate it over `steps` samples at the fixed weights."""
        for t in range(steps):
            j = t % len(self.X_warm)
            self.bt.x[0] = self.X_warm[j]
            rule.deltas(self.bt, self.y_warm[j:j + 1])
            rule.commit(self.bt)

    def estimates(self, name: str, alpha: float, draws: int, warmup_cap: int) -> np.ndarray:
        """(draws, samples, n_hidden_params): independent estimates at every eval sample."""
        n = len(self.X_eval)
        out = np.zeros((draws, n, self.n_hidden_params), dtype=np.float64)
        shared = None if name == "fdfa" else self.rule(name, seed=1, alpha=alpha)
        for r in range(draws):
            rule = shared
            if rule is None:  # one independent warm-up per draw
                rule = self.rule(name, seed=1 + r, alpha=alpha)
                self.warm_up(rule, min(int(np.ceil(3.0 / alpha)), warmup_cap))
            for i in range(n):
                out[r, i] = self.grad(rule, i)
        return out


def measure(probe: Probe, alpha: float, draws: int, warmup_cap: int) -> dict[str, dict]:
    """Cosine with BP and relative variance across draws, per rule."""
    exact = probe.estimates("bp", alpha, 1, warmup_cap)[0]  # (samples, P)
    norms = np.linalg.norm(exact, axis=1)
    out = {}
    for name in ORDER:
        est = exact[None] if name == "bp" else probe.estimates(name, alpha, draws, warmup_cap)
        dots = np.einsum("rip,ip->ri", est, exact)
        cos = dots / np.maximum(np.linalg.norm(est, axis=2) * norms, 1e-30)
        spread = ((est - est.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0) / np.maximum(norms ** 2, 1e-30)
        out[name] = dict(cosine=float(cos.mean()), cosine_std=float(cos.std()),
                         variance=float(spread.mean()) if name in ("fg-w", "fg-a", "fdfa") else 0.0)
    return out


def sweep(p: dict, data: datasets.Dataset) -> dict:
    """The three sweeps: width at the default depth and alpha, depth at the default width, alpha."""
    X_fit, y_fit, X_val, y_val = data.validation_split()
    args = (X_fit, y_fit, X_val[:p["samples"]], y_val[:p["samples"]])

    def run(w: int, d: int, a: float) -> dict:
        return dict(width=w, depth=d, alpha=a, rules=measure(Probe(w, d, *args), a, p["draws"], p["warmup_cap"]))
    return dict(width=[run(w, p["depth"], p["alpha"]) for w in p["widths"]],
                depth=[run(p["width"], d, p["alpha"]) for d in p["depths"]],
                alpha=[run(p["width"], p["depth"], a) for a in p["alphas"]])


def plot(results: dict, out: Path) -> list[str]:
    """One PNG per sweep: cosine (left) and relative variance, log scale (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, label in (("width", "hidden width"), ("depth", "hidden layers"), ("alpha", "FDFA alpha")):
        rows = results[key]
        xs = [r[key] for r in rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for name in ORDER:
            left.plot(xs, [r["rules"][name]["cosine"] for r in rows], marker="o", label=name, color=COLORS[name])
            if name in ("fg-w", "fg-a", "fdfa"):
                right.plot(xs, [r["rules"][name]["variance"] for r in rows], marker="o", label=name,
                           color=COLORS[name])
        for ax in (left, right):
            ax.set_xlabel(label)
            if key != "depth":
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend()
        left.set_ylabel("cosine with the exact gradient")
        right.set_ylabel("variance across draws / |exact grad|^2")
        right.set_yscale("log")
        fig.suptitle(f"Hidden-layer update quality vs {label} (784-in MNIST subset, batch 1, init weights)")
        fig.tight_layout()
        path = out / f"gradient_quality_{key}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: the test suite's run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    p = SMOKE if args.smoke else FULL
    start = time.perf_counter()
    results = sweep(p, datasets.load("mnist5k"))
    args.out.mkdir(parents=True, exist_ok=True)
    at = next(r["rules"] for r in results["width"] if r["width"] == p["width"])
    target = dict(width=p["width"], fga_over_fdfa_variance=at["fg-a"]["variance"] / max(at["fdfa"]["variance"], 1e-30),
                  fdfa_cosine=at["fdfa"]["cosine"], dfa_cosine=at["dfa"]["cosine"])
    target["met"] = bool(target["fga_over_fdfa_variance"] >= 10 and target["fdfa_cosine"] > target["dfa_cosine"])
    doc = dict(params=p, target=target, results=results, seconds=time.perf_counter() - start,
               machine=dict(python=platform.python_version(), numpy=np.__version__,
                            cpu=platform.processor() or platform.machine()))
    doc["plots"] = [Path(p).name for p in plot(results, args.out)]
    (args.out / "gradient_quality.json").write_text(json.dumps(doc, indent=1))
    print(json.dumps(target))


if __name__ == "__main__":
    main()
