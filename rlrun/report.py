"""Multi-seed report: one table and one figure per metric from a sweep directory or `outputs/`.

    rlrun-report outputs/multirun/2026-11-21/10-00-00 [--metrics eval/return_mean] [--out DIR]

Runs (directories with TensorBoard events and a .hydra/config.yaml) are grouped by their config
with the seed removed. The table gives, per group, the last value of each metric (mean ± std over
seeds), its best value over the run (mean ± std), and the interquartile mean of the last values with
a 95% percentile-bootstrap confidence interval (numpy; rliable 1.2 fails to import beside pandas 3).
Learning curves show the mean and a 95% bootstrap band of the mean per group. When the runs hold
several algorithms, a comparison table per metric follows: one row per dataset (or env), one column
per algorithm, each cell the IQM of the last values with its 95% CI. Runs that fine-tuned online
(trainer.finetune_steps > 0) get CORL's fine-tuning numbers per group: the score at the switch
(before), the last score (after), the dip (lowest online evaluation minus before) and the regret,
1 − the mean normalized score over the online phase's evaluations / 100.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from rlrun.logger import flatten  # noqa: E402

IGNORED_KEYS = {"seed", "resume", "dry_run"}
IGNORED_PREFIXES = ("trainer.progress",)


@dataclass
class Run:
    path: Path
    config: dict
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # tag -> (steps, values)


def find_runs(root: Path, metrics: list[str]) -> list[Run]:
    runs = []
    for config_file in sorted(root.rglob(".hydra/config.yaml")):
        run_dir = config_file.parent.parent
        if not list(run_dir.glob("events.out.tfevents.*")):
            continue
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        config = flatten(OmegaConf.to_container(OmegaConf.load(config_file), resolve=False))
        run = Run(run_dir, config)
        for tag in metrics:
            if tag in acc.Tags()["scalars"]:
                events = acc.Scalars(tag)
                run.curves[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
        runs.append(run)
    return runs


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Group by config without the seed; name each group by the keys in which groups differ."""

    def key(run: Run) -> str:
        kept = {k: v for k, v in run.config.items() if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}
        return json.dumps(kept, sort_keys=True, default=str)

    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(key(run), []).append(run)
    configs = [json.loads(k) for k in by_key]
    differing = sorted({k for c in configs for k in c if any(c.get(k) != o.get(k) for o in configs)})
    bases = [
        f"{str(c.get('algo._target_', '?')).rsplit('.', 1)[-1]} on {c.get('env.id') or c.get('dataset.id')}" for c in configs
    ]
    named = {}
    for i, (config, base, members) in enumerate(zip(configs, bases, by_key.values())):
        if differing and len(differing) <= 4:
            named[", ".join(f"{d.rsplit('.', 1)[-1]}={config.get(d)}" for d in differing)] = members
        else:  # algorithm × dataset sweeps differ in many preset keys: name groups by what they ran
            named[base if bases.count(base) == 1 else f"{base} #{i}"] = members
    return named


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle half (25% trimmed from each end)."""
    n = values.shape[axis]
    cut = int(0.25 * n)
    ordered = np.sort(values, axis=axis)
    return np.take(ordered, range(cut, n - cut), axis=axis).mean(axis=axis)


def iqm_with_ci(values: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """IQM over runs and its 95% percentile-bootstrap CI (runs resampled with replacement)."""
    rng = np.random.default_rng(seed)
    resampled = values[rng.integers(0, len(values), (reps, len(values)))]  # (reps, runs)
    low, high = np.percentile(iqm(resampled), [2.5, 97.5])
    return float(iqm(values)), float(low), float(high)


def table(groups: dict[str, list[Run]], metrics: list[str]) -> list[dict[str, object]]:
    rows = []
    for label, members in groups.items():
        for tag in metrics:
            curves = [r.curves[tag][1] for r in members if tag in r.curves]
            if not curves:
                continue
            finals, bests = np.array([c[-1] for c in curves]), np.array([c.max() for c in curves])
            point, low, high = iqm_with_ci(finals)
            rows.append(
                {
                    "group": label,
                    "metric": tag,
                    "runs": len(finals),
                    "mean": finals.mean(),
                    "std": finals.std(),
                    "best_mean": bests.mean(),
                    "best_std": bests.std(),
                    "iqm": point,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return rows


def bootstrap_band(values: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% bootstrap interval of the mean over runs, per step; values (runs, steps)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (reps, len(values)))
    means = values[idx].mean(1)  # (reps, runs, steps) -> (reps, steps)
    return np.percentile(means, 2.5, 0), np.percentile(means, 97.5, 0)


def plot(groups: dict[str, list[Run]], tag: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, members in groups.items():
        curves = [r.curves[tag] for r in members if tag in r.curves]
        if not curves:
            continue
        steps = curves[0][0]
        for s, _ in curves[1:]:
            steps = np.intersect1d(steps, s)
        values = np.stack([np.interp(steps, s, v) for s, v in curves])  # (runs, steps)
        ax.plot(steps, values.mean(0), marker="o", markersize=3, label=f"{label} (n={len(curves)})")
        low, high = bootstrap_band(values)
        ax.fill_between(steps, low, high, alpha=0.25)
    ax.set_xlabel("step")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| group | metric | runs | last: mean ± std | best: mean ± std | last: IQM [95% CI] |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['group']} | {r['metric']} | {r['runs']} | {r['mean']:.1f} ± {r['std']:.1f} | "
            f"{r['best_mean']:.1f} ± {r['best_std']:.1f} | "
            f"{r['iqm']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}] |"
        )
    return "\n".join(lines)


def algorithm_and_data(run: Run) -> tuple[str, str]:
    """The algorithm's class name and the dataset id or env id of a run."""
    algo = str(run.config.get("algo._target_", "?")).rsplit(".", 1)[-1]
    return algo, str(run.config.get("dataset.id") or run.config.get("env.id"))


def comparison(runs: list[Run], metric: str) -> str:
    """Algorithms side by side on each dataset: IQM of the last value [95% CI] over seeds, and the
    run count; a markdown table with one row per dataset and one column per algorithm."""
    cells: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        if metric in run.curves:
            cells.setdefault(algorithm_and_data(run), []).append(float(run.curves[metric][1][-1]))
    algos = sorted({a for a, _ in cells})
    datasets = sorted({d for _, d in cells})
    lines = [f"| {metric}, last: IQM [95% CI] (runs) | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for data in datasets:
        row = []
        for algo in algos:
            values = np.array(cells.get((algo, data), []))
            if len(values):
                point, low, high = iqm_with_ci(values)
                row.append(f"{point:.1f} [{low:.1f}, {high:.1f}] ({len(values)})")
            else:
                row.append("–")
        lines.append(f"| {data} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def finetune_numbers(run: Run, tag: str) -> dict[str, float] | None:
    """before, after, dip and (for normalized scores) regret of one fine-tuning run; None when the run
    did not fine-tune or has no evaluation on both sides of the switch."""
    switch, online_steps = run.config.get("trainer.total_steps"), run.config.get("trainer.finetune_steps") or 0
    if not online_steps or tag not in run.curves:
        return None
    steps, values = run.curves[tag]
    offline, online = values[steps <= switch], values[steps > switch]
    if not len(offline) or not len(online):
        return None
    numbers = {"before": float(offline[-1]), "after": float(online[-1]), "dip": float(online.min() - offline[-1])}
    if tag == "eval/normalized_score":
        numbers["regret"] = float(1.0 - online.mean() / 100.0)
    return numbers


def finetune_table(groups: dict[str, list[Run]], metrics: list[str]) -> str:
    """Fine-tuning numbers per group (mean ± std over seeds) for each metric; "" without fine-tuning runs."""
    lines = []
    for tag in metrics:
        for label, members in groups.items():
            found = [n for n in (finetune_numbers(r, tag) for r in members) if n is not None]
            if not found:
                continue
            cells = []
            for key in ("before", "after", "dip", "regret"):
                values = np.array([n[key] for n in found if key in n])
                cells.append(f"{values.mean():.2f} ± {values.std():.2f}" if len(values) else "–")
            lines.append(f"| {label} | {tag} | {len(found)} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = "| group | metric | runs | before (at the switch) | after (last) | dip (lowest online − before) | regret |"
    return "\n".join(["Fine-tuning (mean ± std over seeds):", "", head, "|---|---|---|---|---|---|---|", *lines])


def report(root: Path, metrics: list[str], out: Path) -> str:
    runs = find_runs(root, metrics)
    if not runs:
        raise SystemExit(f"rlrun-report: error: no runs (TensorBoard events with .hydra/config.yaml) under {root}.")
    groups = group_runs(runs)
    rows = table(groups, metrics)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    if len({algorithm_and_data(r)[0] for r in runs}) > 1:  # several algorithms: compare them per dataset
        text += "".join(f"\n\n{comparison(runs, tag)}" for tag in metrics if any(tag in r.curves for r in runs))
    finetuning = finetune_table(groups, metrics)
    if finetuning:
        text += f"\n\n{finetuning}"
    (out / "report.md").write_text(text + "\n")
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["group"])
        writer.writeheader()
        writer.writerows(rows)
    for tag in metrics:
        if any(tag in r.curves for r in runs):
            plot(groups, tag, out / f"{tag.replace('/', '_')}.png")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="Table and learning curves of a sweep or of outputs/.")
    parser.add_argument("path", nargs="?", default="outputs", help="a sweep directory or outputs/")
    parser.add_argument("--metrics", nargs="+", default=["eval/return_mean", "eval/normalized_score"])
    parser.add_argument("--out", default=None, help="where report.md/.csv and the PNGs go (default PATH/report)")
    args = parser.parse_args()
    root = Path(args.path)
    print(report(root, args.metrics, Path(args.out) if args.out else root / "report"))
    print(f"\nwritten: {Path(args.out) if args.out else root / 'report'}/report.md, report.csv and one PNG per metric")


if __name__ == "__main__":
    main()
