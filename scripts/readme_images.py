"""Make the README's pictures from a demo run: the balance maps, one map and one table.

Usage::

    .venv/bin/opinionmap demo --out demo-out          # publication quality (4 x 1,000 draws)
    .venv/bin/python scripts/readme_images.py demo-out [--question presence_russia]

Writes ``docs/demo_balance.png`` (the report's first-screen balance maps),
``docs/demo_map.png`` (the question's map, downscaled) and
``docs/demo_table.png`` (the by-region table of the same question: share of each
answer with its 90% interval and the respondents per region), small enough to
commit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image

import opinionmap as om
from opinionmap._io import FIGURE_DPI, atomic_path
from opinionmap.summaries import interval_prob

ROOT = Path(__file__).resolve().parents[1]


def save_picture(source: Path, out: Path, width: int = 1000) -> Path:
    """A figure of the demo, downscaled to ``width`` pixels and quantised, to commit."""
    image = Image.open(source).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    with atomic_path(out) as tmp:
        image.quantize(colors=128).save(tmp, format="PNG", optimize=True)
    return out


def save_table(demo: Path, question: str, out: Path) -> Path:
    table = pd.read_csv(demo / f"{question}_by_region.csv")
    categories = list(dict.fromkeys(table["category"]))
    names = om.datasets.kazakhstan_region_names()
    rows = []
    for region, part in table.groupby("region", sort=False):
        part = part.set_index("category")
        cells = [
            f"{part.loc[c, 'mean']:.0%} [{part.loc[c, 'lower']:.0%}, {part.loc[c, 'upper']:.0%}]"
            for c in categories
        ]
        n = int(part["n_respondents"].iloc[0])
        rows.append((names.get(str(region), str(region)), n, *cells))
    rows.sort(key=lambda r: -float(r[2].split("%")[0]))
    width = f"{interval_prob():.0%}"
    header = ["Region", "respondents", *[f"{c} ({width} interval)" for c in categories]]
    fig, ax = plt.subplots(figsize=(10, 0.22 * (len(rows) + 1)))
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(9)
    t.auto_set_column_width(list(range(len(header))))
    for (row, _), cell in t.get_celld().items():
        cell.set_edgecolor("#dddddd")
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#f0f0f0")
    ax.set_title(
        f"{question}: MRP share by region (opinionmap demo, synthetic survey)", fontsize=10
    )
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    image = Image.open(out).convert("RGB")
    with atomic_path(out) as tmp:
        image.quantize(colors=64).save(tmp, format="PNG", optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="the folder `opinionmap demo --out` wrote")
    parser.add_argument("--question", default="presence_russia")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    for path in (
        save_picture(args.demo / "balance_by_region.png", args.out / "demo_balance.png"),
        save_picture(args.demo / f"{args.question}_map.png", args.out / "demo_map.png"),
        save_table(args.demo, args.question, args.out / "demo_table.png"),
    ):
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
