"""`ridrepro pid table P.npy` and `ridrepro pid features T.npy S.npy Y.npy`: print the BROJA atoms."""

import json
from pathlib import Path

import numpy as np

from ridrepro.argtypes import NON_NEGATIVE, POSITIVE, seed
from ridrepro.fmt import fmt_p


def _load(path, what):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):  # not a .npy file, a truncated one, or an object array
        raise ValueError(f"{what} file {path} is not a plain numpy .npy array of numbers "
                         "(write one with numpy.save)") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        kind = "an .npz archive" if not isinstance(array, np.ndarray) else f"{array.dtype} values"
        raise ValueError(f"{what} file {path} holds {kind}; real numbers are needed")
    return array


def _print(result, as_json):
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    u = result.unit
    for name, label in [("red", "Red(Y:T,S)"), ("uni_t", "Uni(Y:T\\S)"), ("uni_s", "Uni(Y:S\\T)"),
                        ("syn", "Syn(Y:T,S)"), ("i_yt", "I(Y;T)"), ("i_ys", "I(Y;S)"), ("i_yts", "I(Y;T,S)")]:
        line = f"{label:<12} {getattr(result, name):.9f} {u}"
        boot = result.extras.get("bootstrap", {}).get(name)
        if boot:
            line += f"   {100 * result.extras['bootstrap']['ci']:.0f}% CI [{boot[0]:.6f}, {boot[1]:.6f}]"
        null = result.extras.get("null", {}).get(name)
        if null:
            line += f"   null mean {null['mean']:.6f} q95 {null['q95']:.6f} {fmt_p(null['p_value'])}"
        print(line)
    print(f"{'gap':<12} {result.gap:.3g} {u} (certified bound on every atom's error; solver {result.solver})")


def _cmd_table(args):
    from .broja import broja_pid

    P = _load(args.table, "joint table")
    result = broja_pid(P, unit=args.unit, normalize=args.normalize, solver=args.solver)
    _print(result, args.json)
    return 0


def _cmd_features(args):
    from .features import PRESETS, representation_pid

    overrides = {k: v for k, v in dict(pca_components=args.pca, n_clusters=args.clusters, unit=args.unit,
                                        bootstrap=args.bootstrap, null=args.null).items() if v is not None}
    if args.no_normalize:
        overrides["normalize_rows"] = False
    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    t, s, y = (_load(f, w) for f, w in [(args.teacher, "teacher"), (args.student, "student"), (args.labels, "labels")])
    result = representation_pid(t, s, y, preset=args.preset, seed=args.seed, **overrides)
    _print(result, args.json)
    return 0


def add_commands(sub):
    p = sub.add_parser("pid", help="BROJA partial information decomposition of a joint table or of features")
    psub = p.add_subparsers(dest="pid_command", required=True, metavar="{table,features}")

    t = psub.add_parser("table", help="atoms of a joint table P[t, s, y] saved with numpy.save")
    t.add_argument("table", help=".npy file holding P[t, s, y] (probabilities, or counts with --normalize)")
    t.add_argument("--normalize", action="store_true", help="divide by the total (for counts)")
    t.add_argument("--unit", choices=["bits", "nats"], default="bits", help="unit of the atoms (default bits)")
    t.add_argument("--solver", choices=["ip", "cvxpy"], default="ip",
                   help="ip: certified interior-point solver (default); cvxpy: Clarabel reference")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(func=_cmd_table)

    f = psub.add_parser("features", help="atoms from teacher/student features and labels (PCA + KMeans + PID)")
    f.add_argument("teacher", help=".npy teacher features, shape (N, ...)")
    f.add_argument("student", help=".npy student features, shape (N, ...)")
    f.add_argument("labels", help=".npy integer labels, shape (N,)")
    f.add_argument("--preset", default="paper-code", help="paper-code (PCA 5) or paper-text (PCA 10); both 10 clusters, nats")
    f.add_argument("--seed", type=seed, default=0, help="PCA/KMeans seed, 0 <= seed < 2**31 (default 0)")
    f.add_argument("--pca", type=POSITIVE, help="PCA components, >= 1 (overrides the preset)")
    f.add_argument("--clusters", type=POSITIVE, help="KMeans clusters per side, >= 1 (overrides the preset)")
    f.add_argument("--no-normalize", action="store_true", help="skip the row L2-normalisation")
    f.add_argument("--unit", choices=["bits", "nats"], help="overrides the preset's nats")
    f.add_argument("--bootstrap", type=NON_NEGATIVE, help="bootstrap resamples for percentile CIs, >= 0")
    f.add_argument("--null", type=NON_NEGATIVE, help="shuffled-label repetitions for a null distribution, >= 0")
    f.add_argument("--json", action="store_true", help="print the result as JSON")
    f.set_defaults(func=_cmd_features)
