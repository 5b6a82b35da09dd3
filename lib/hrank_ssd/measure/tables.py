"""Markdown tables from DataFrames, for the report, the README and the benchmarks (no ``tabulate`` needed)."""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import pandas as pd


def _fmt(v, floatfmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return "n/a" if math.isnan(v) else format(float(v), floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f", formats: Optional[Dict[str, str]] = None) -> str:
    """A GitHub markdown table of a DataFrame; ``formats``: a column's float format (default ``floatfmt``)."""
    formats = formats or {}
    cols = [str(c) for c in df.columns]
    body = [[_fmt(v, formats.get(c, floatfmt)) for c, v in zip(cols, row)] for row in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)
