"""The book's one way to print a p-value: two significant digits, and a permutation test's floor marked as such."""


def fmt_p(p, floor=None, name="p"):
    """'p = 0.0099', 'p = 0.26', 'p = 0.50'; at or below `floor`, a permutation test's smallest reportable
    p-value 1 / (1 + shuffles), 'p ≤ 0.0001': no shuffle reached the observed value. name="" gives the bare
    value ('0.26', '≤ 0.0001') for a table's p column; None or NaN gives '-'."""
    if p is None or p != p:
        return "-"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"{name} ≤ {floor:.2g}" if name else f"≤ {floor:.2g}"
    return f"{name} = {p:#.2g}" if name else f"{p:#.2g}"
