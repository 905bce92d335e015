"""The paper's Table I (methods) and Table II (training settings) as harness method specs,
with the paper's numbers (rank-1, VACC, AUC: mean and SD over 5 folds) beside each row, and
their markdown rendering from a report (``ctface evaluate --tables``).

Rows the harness cannot run here carry ``spec=None`` and the reason (no ModelNet40 or
ImageNet offline). Table II's E x L sweep keeps the paper's E values at ctface's batch of
about 90 (the paper: 270; E = 90 becomes 45, the largest with L >= 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Paper = tuple[float, float, float, float, float, float]  # rank-1, sd, VACC, sd, AUC, sd


@dataclass(frozen=True)
class Row:
    label: str
    spec: str | None  # harness method (without ``it``), None when it cannot run here
    paper: Paper | None
    why_not: str = ""


def _cnn_rows() -> list[Row]:
    paper = {  # (crop, rot) -> numbers, in the paper's row order per network
        "VGG16": [
            (0.2482, 0.026, 0.6733, 0.028, 0.7518, 0.023),
            (0.2024, 0.059, 0.6693, 0.021, 0.7272, 0.017),
            (0.2461, 0.085, 0.6951, 0.047, 0.7589, 0.052),
            (0.3444, 0.041, 0.7568, 0.033, 0.8265, 0.022),
        ],
        "ResNet10": [
            (0.2930, 0.068, 0.6612, 0.034, 0.7301, 0.018),
            (0.2820, 0.044, 0.6829, 0.030, 0.7446, 0.039),
            (0.2863, 0.060, 0.7210, 0.009, 0.7989, 0.021),
            (0.3571, 0.085, 0.7608, 0.026, 0.8423, 0.029),
        ],
        "ResNet18": [
            (0.3236, 0.078, 0.6831, 0.027, 0.7597, 0.019),
            (0.2837, 0.048, 0.6747, 0.051, 0.7342, 0.040),
            (0.2877, 0.045, 0.7079, 0.032, 0.7883, 0.031),
            (0.2775, 0.076, 0.7318, 0.043, 0.8052, 0.041),
        ],
        "ResNet34": [
            (0.3407, 0.049, 0.7234, 0.029, 0.7893, 0.038),
            (0.2930, 0.042, 0.6831, 0.032, 0.7379, 0.027),
            (0.3271, 0.097, 0.7620, 0.024, 0.8032, 0.058),
            (0.4000, 0.094, 0.7771, 0.056, 0.8535, 0.048),
        ],
    }
    rows = []
    for name, numbers in paper.items():
        arch = f"{name.lower()}-3d"
        # the paper's four rows per network: neither, rotation, cropping, both
        for (crop, rot), p in zip([(0, 0), (0, 1), (1, 0), (1, 1)], numbers, strict=True):
            what = ", ".join(w for w, on in (("crop", crop), ("rotation", rot)) if on) or "-"
            rows.append(Row(f"3D {name} ({what})", f"{arch}:crop={crop},rot={rot}", p))
    return rows


TABLE_I: list[Row] = [
    *_cnn_rows(),
    Row("PointNet", "pointnet", (.3634, .054, .7089, .039, .7263, .038)),
    Row("PointNet (ModelNet40 pretrained)", None, (.3762, .045, .6786, .010, .7529, .097),
        "ModelNet40 is not reachable offline"),
    Row("PointNet++ (MSG)", "pointnet2", (.2066, .013, .6308, .009, .6907, .014)),
    Row("PointNet++ (ModelNet40 pretrained)", None, (.2055, .017, .6355, .009, .6965, .13),
        "ModelNet40 is not reachable offline"),
    Row("Proposed, no pretraining", "ours:pretrained=0", (.8712, .032, .9374, .009, .9857, .004)),
    Row("Proposed (ImageNet pretrained)", None, (.8764, .051, .9513, .027, .9849, .005),
        "ImageNet weights are not reachable offline (and do not fit 1-channel depth)"),
    Row("Proposed (depth images pretrained)", "ours", (.9253, .044, .9612, .016, .9936, .004)),
]  # fmt: skip

_EL = [("3x90", "3x30"), ("5x54", "5x18"), ("10x27", "10x9"), ("18x15", "18x5"),
       ("30x9", "30x3"), ("90x3", "45x2")]  # fmt: skip
_EL_PAPER = [
    (.8512, .035, .9312, .012, .9785, .008),
    (.8517, .024, .9745, .015, .9208, .008),
    (.8928, .030, .9349, .013, .9807, .002),
    (.8652, .032, .9316, .008, .9819, .004),
    (.8709, .027, .9417, .007, .9821, .009),
    (.8648, .031, .9267, .010, .9797, .006),
]  # fmt: skip
# (grouping, proportion, pretrained) of the paper's rows 9-14. The pretrained column (n/y in
# turn) is certain; which of grouping / proportion is off in each pair is read from a garbled
# text extraction of the table and may be swapped between rows 11-12 and 13-14.
_GP = [
    (0, 0, 0, (.7485, .025, .8956, .009, .9632, .009)),
    (0, 0, 1, (.8670, .020, .9402, .009, .9860, .005)),
    (1, 0, 0, (.8192, .032, .9170, .016, .9771, .006)),
    (1, 0, 1, (.9097, .012, .9471, .015, .9888, .006)),
    (0, 1, 0, (.8377, .034, .9328, .012, .9809, .003)),
    (0, 1, 1, (.8516, .031, .9325, .011, .9825, .004)),
]  # fmt: skip
TABLE_II: list[Row] = [
    Row("1: data stage Projected", "ours:stage=projected", (.8778, .034, .9419, .024, .9708, .020)),
    Row("2: data stage Segmented", "ours:stage=segmented", (.8842, .048, .9543, .024, .9831, .009)),
    *[Row(f"{3 + i}: E x L = {p} (ctface {c})", f"ours:el={c}", n)
      for i, ((p, c), n) in enumerate(zip(_EL, _EL_PAPER, strict=True))],
    *[Row(f"{9 + i}: grouping {'on' if g else 'off'}, proportion {'on' if pr else 'off'}, "
          f"{'pretrained' if pre else 'no pretraining'}",
          f"ours:grouping={g},proportion={pr},pretrained={pre}", n)
      for i, (g, pr, pre, n) in enumerate(_GP)],
    Row("15: all on, no pretraining", "ours:pretrained=0", (.8712, .032, .9374, .009, .9857, .004)),
    Row("16: all on, pretrained (Final)", "ours", (.9253, .044, .9612, .016, .9936, .004)),
]  # fmt: skip
TABLES = {"table1": TABLE_I, "table2": TABLE_II}


def preset_specs(name: str) -> list[str]:
    """The runnable method specs of ``table1``, ``table2`` or ``tables`` (both), deduplicated."""
    rows = TABLE_I + TABLE_II if name == "tables" else TABLES[name]
    return list(dict.fromkeys(r.spec for r in rows if r.spec is not None))


def metric_text(v: dict[str, Any] | None) -> str:
    """ "mean ± SD" of a report metric ("–" when no fold could give it)."""
    if v is None or v.get("mean") is None:
        return "–"
    return f"{v['mean']:.4f} ± {v['std']:.3f}"


def _cell(m: dict[str, Any] | None, key: str) -> str:
    return metric_text(None if m is None else m.get(key))


def render_tables(report: dict[str, Any], protocol: str = "paper") -> str:
    """Markdown: each table's rows, the paper's numbers beside this report's (``protocol``),
    plus the cross-scan rank-1 where the report has it."""
    from ctface.evaluate.methods import bare_spec

    by_spec = {bare_spec(r["spec"]): r for r in report["methods"]}
    out = []
    for title, rows in (("Table I: methods", TABLE_I), ("Table II: training settings", TABLE_II)):
        out += [
            f"### {title} (protocol `{protocol}`; ctface: mean ± SD over folds)",
            "",
            "| row | paper rank-1 | ctface rank-1 | paper VACC | ctface VACC | paper AUC | "
            "ctface AUC | ctface cross-scan rank-1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            p = row.paper
            pc = [f"{p[i]:.4f} ± {p[i + 1]:.3f}" for i in (0, 2, 4)] if p else ["–"] * 3
            res = by_spec.get(bare_spec(row.spec)) if row.spec is not None else None
            if row.spec is None:
                ours = [f"not run: {row.why_not}", "", "", ""]
            elif res is None:
                ours = ["not in this report"] + [""] * 3
            else:
                mp = res["protocols"].get(protocol, {}).get("metrics")
                mc = res["protocols"].get("cross-scan", {}).get("metrics")
                ours = [_cell(mp, "rank1"), _cell(mp, "vacc"), _cell(mp, "auc"),
                        _cell(mc, "rank1")]  # fmt: skip
            out.append(f"| {row.label} | {pc[0]} | {ours[0]} | {pc[1]} | {ours[1]} | {pc[2]} | "
                       f"{ours[2]} | {ours[3]} |")  # fmt: skip
        out.append("")
    return "\n".join(out)
