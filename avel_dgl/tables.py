"""The Table 3 tables of a grid folder: one row per label set, variant and column with the mean
and sample std over seeds of the finished runs' test accuracy (`summarize`), written as
table.csv and, in Table 3's layout, table.md (`write_tables`)."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from avel_dgl.config import Config
from avel_dgl.format import LABEL_SETS
from avel_dgl.grid import COLUMNS, applicable, read_results, run_dir, variant_summary
from avel_dgl.nn.dpnet import VARIANTS
from avel_dgl.outputs import write_text_atomic

# Table 3's row labels for each variant (rows follow VARIANTS' order).
NETWORKS = {
    "rgat": ("RGAT only", "One perspective"),
    "rgct": ("RGCT only", "One perspective"),
    "tcn": ("TCN only", "One perspective"),
    "tcn-rgct": ("TCN -> RGCT", "Two perspectives"),
    "rgct-tcn": ("RGCT -> TCN", "Two perspectives"),
    "dpnet-parallel": ("DPNet w/ PPBlock", "Block-wise two perspectives"),
    "dpnet-graph-second": ("DPNet w/ Graph Second", "Block-wise two perspectives"),
    "dpnet": ("DPNet w/ Graph First", "Block-wise two perspectives"),
}


def finished_variants(out_dir: Path) -> list[str]:
    """The variants of which the grid folder holds at least one finished run."""
    return [v for v in VARIANTS if any(read_results(folder) is not None for folder in (Path(out_dir) / v).glob("*/seed*"))]


def summarize(base: Config, out_dir: Path, variants: list[str], seeds: int) -> list[dict]:
    """One row per label set, variant and column over seeds 0..seeds-1: mean and sample std (%).
    The variants are those asked for and every other one with a finished run in the grid folder
    (a rerun of some variants keeps the others in the table)."""
    variants = [v for v in VARIANTS if v in variants or v in finished_variants(out_dir)]
    rows = []
    info = {v: variant_summary(base, v) for v in variants}
    for label_set in LABEL_SETS:
        for number, variant in enumerate(VARIANTS, 1):
            if variant not in variants:
                continue
            network, setting = NETWORKS.get(variant, (variant, ""))
            for c in COLUMNS:
                values, skipped = [], 0
                for seed in range(seeds):
                    results = read_results(run_dir(out_dir, variant, c.name, seed))
                    if results is not None and results[f"test_acc_{label_set}"] is None:
                        skipped += 1  # finished without this label set's file (right_labels.h5)
                    elif results is not None:
                        values.append(100 * results[f"test_acc_{label_set}"])
                if not applicable(base, variant, c.name):
                    status = "N/A"
                elif skipped and not values:
                    status = "skipped"
                else:
                    status = "done" if len(values) == seeds else "partial" if values else "not run"
                rows.append({
                    "label_set": label_set, "row": number, "network": network, "setting": setting,
                    "variant": variant, **info[variant], "column": c.name, "title": c.title, "status": status,
                    "seeds": len(values), "of_seeds": seeds,
                    "mean_pct": round(statistics.mean(values), 4) if values else None,
                    "std_pct": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                    "values_pct": ";".join(f"{x:.4f}" for x in values),
                })
    return rows


def _cell_text(row: dict, best: bool) -> str:
    if row["status"] in ("N/A", "not run", "skipped"):
        return row["status"]
    text = f"{row['mean_pct']:.2f}"
    if row["std_pct"] is not None:
        text += f" ± {row['std_pct']:.2f}"
    if best:
        text = f"**{text}**"
    if row["status"] == "partial":
        text += f" ({row['seeds']}/{row['of_seeds']} seeds)"
    return text


def markdown(rows: list[dict]) -> str:
    """Table 3's layout, one table per label set; the best mean of each column in bold."""
    parts = []
    for label_set in LABEL_SETS:
        mine = [r for r in rows if r["label_set"] == label_set]
        if not mine:
            continue
        seeds = mine[0]["of_seeds"]
        best = {c.name: max((r["mean_pct"] for r in mine if r["column"] == c.name and r["mean_pct"] is not None),
                            default=None) for c in COLUMNS}
        parts.append(f"{label_set.upper()}: test accuracy (%) of the validation-selected checkpoint, "
                     f"mean ± std over {seeds} seed{'s' if seeds > 1 else ''}\n")
        parts.append("| # | Network | Perspective setting | Layers | Params | "
                     + " | ".join(c.title for c in COLUMNS) + " |")
        parts.append("|---|---|---|---|---:|" + "---:|" * len(COLUMNS))
        for variant in dict.fromkeys(r["variant"] for r in mine):
            cells = {r["column"]: r for r in mine if r["variant"] == variant}
            first = next(iter(cells.values()))
            texts = [_cell_text(cells[c.name], cells[c.name]["mean_pct"] == best[c.name]) for c in COLUMNS]
            layers = first["layers"].replace("|", "\\|")  # a PPBlock's 'RGCT||TCN' inside a table cell
            parts.append(f"| {first['row']} | {first['network']} | {first['setting']} | {layers} | "
                         f"{first['params'] / 1e6:.2f}M | " + " | ".join(texts) + " |")
        parts.append("")
    return "\n".join(parts)


CSV_FIELDS = ["label_set", "row", "network", "setting", "variant", "layers", "params", "column", "title",
              "status", "seeds", "of_seeds", "mean_pct", "std_pct", "values_pct"]


def write_tables(out_dir: Path, rows: list[dict]) -> None:
    """table.csv and table.md, each written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(out_dir) / "table.csv", text.getvalue())
    write_text_atomic(Path(out_dir) / "table.md", markdown(rows))
