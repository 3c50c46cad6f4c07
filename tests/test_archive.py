"""The book's downloadable archive holds every CSV and run log, and no weights, checkpoints or features."""

import zipfile

from ridrepro.analysis.archive import archive_members, write_archive


def test_archive_keeps_logs_and_csvs_only(tmp_path):
    run = tmp_path / "runs" / "smoke" / "bas-s0"
    (run / "pca50").mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "pid.jsonl", "pid_intervals.jsonl", "finished.json",
                 "student.pt", "checkpoint.pt", "lock", "pca50/epoch1.npy", "pca50/index.json"):
        (run / name).write_text("x")
    (tmp_path / "runs" / "smoke" / "logs").mkdir()
    (tmp_path / "runs" / "smoke" / "logs" / "bas-s0.log").write_text("x")
    (tmp_path / "runs" / "smoke" / "probes.csv").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chapter.csv").write_text("x")

    names = [n for _, n in archive_members(tmp_path / "runs", tmp_path / "data")]
    assert names == ["results/smoke/bas-s0/config.json", "results/smoke/bas-s0/finished.json",
                     "results/smoke/bas-s0/metrics.jsonl", "results/smoke/bas-s0/pid.jsonl",
                     "results/smoke/bas-s0/pid_intervals.jsonl", "results/smoke/logs/bas-s0.log",
                     "results/smoke/probes.csv", "book/data/chapter.csv"]

    out = tmp_path / "out" / "a.zip"
    assert write_archive(tmp_path / "runs", out, data=tmp_path / "data") == len(names)
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == [f"ridrepro-results/{n}" for n in names]
