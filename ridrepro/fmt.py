"""How the book prints numbers and tables: one p-value format, one "mean ± sd" over seeds, one Markdown table."""


def fmt_p(p, floor=None, name="p"):
    """'p = 0.0099', 'p = 0.26', 'p = 0.50'; at or below `floor`, a permutation test's smallest reportable
    p-value 1 / (1 + shuffles), 'p ≤ 0.0001': no shuffle reached the observed value. name="" gives the bare
    value ('0.26', '≤ 0.0001') for a table's p column; None or NaN gives '-'."""
    if p is None or p != p:
        return "-"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"{name} ≤ {floor:.2g}" if name else f"≤ {floor:.2g}"
    return f"{name} = {p:#.2g}" if name else f"{p:#.2g}"


def mean_sd(values, spec=".3f"):
    """'0.412 ± 0.013' over seeds (sample sd); one value alone, as it has no spread; '-' for none (NaN dropped)."""
    v = [x for x in values if x == x]
    if not v:
        return "-"
    if len(v) == 1:
        return format(v[0], spec)
    mean = sum(v) / len(v)
    sd = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5
    return f"{format(mean, spec)} ± {format(sd, spec)}"


def markdown_table(df, index=False, floatfmt=None):
    """A DataFrame as a Markdown table: it wraps inside the page where a wide HTML table would scroll. floatfmt
    (a format spec such as ".4g") formats the float cells; others print as str does."""
    if index:
        df = df.reset_index()
    cell = lambda v: format(v, floatfmt) if floatfmt and isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(str(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(rows)
