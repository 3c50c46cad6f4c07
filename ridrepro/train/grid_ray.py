"""`ridrepro grid --backend ray`: each grid cell is a Ray task, so a grid spreads over a cluster.

Ray does all the scheduling. A cell asks for --cpus-per-cell CPUs and --gpus-per-cell GPUs, and receives the
results of the cells it needs (its teachers; BAS for paper-text's TED) as arguments, so Ray starts it only once
they have finished. Inside the task the cell runs exactly as with --backend local, as a subprocess
`python -m ridrepro teacher|distil ... --threads C`: the numbers are bit-identical to the local backend's and a
crash takes down that process only. Everything is in the run folders under --runs (a path that every node must
see): a finished cell is skipped, a killed one resumes from its checkpoint when Ray retries it, and the run lock
keeps two tasks off one cell.

Ray is imported inside the functions, never at the top: training must start on machines without Ray.
"""

import ctypes
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ridrepro.files import RunLocked
from ridrepro.protocols import get_protocol

# A cell whose process was killed (preemption, the OOM killer, a dead Ray worker) is retried this many times.
RETRIES = 3
LOG_TAIL = 8  # log lines quoted when a cell fails


class CellKilled(RuntimeError):
    """The cell's process died from a signal. Ray retries only this (retry_exceptions): the retry resumes from
    the checkpoint. A cell that exits with an error is not retried, since bad input would only fail again."""

    def __init__(self, name, node, reason):
        super().__init__(f"{name} on {node}: {reason}")
        self.name, self.node, self.reason = name, node, reason

    def __reduce__(self):  # Ray pickles the exception to the driver; keep its fields
        return CellKilled, (self.name, self.node, self.reason)


# ----------------------------------------------------------------------------- inside a Ray task

def _node():
    import ray
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


def _die_with_parent():
    # If the Ray worker dies, so does its cell: an orphan would hold the run lock against the retry.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except OSError:
        pass


def _tail(path, n=LOG_TAIL):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as err:
        return f"(no log: {err})"
    return "\n".join(lines[-n:]) or "(empty log)"


def sees_marker(marker):
    return _node(), Path(marker).is_file()


def run_cell(name, argv, folder, log, marker, threads, *upstream):
    """One cell as a subprocess; returns a small dict for the driver (and for the cells that wait on this one)."""
    import ray
    node = _node()
    result = {"name": name, "node": node}
    missing = [u["name"] for u in upstream if u["status"] != "done"]
    if missing:
        return {**result, "status": "skipped", "reason": f"needs {', '.join(missing)}, which did not finish"}
    if not Path(marker).is_file():
        return {**result, "status": "failed", "reason": f"cannot see {marker}, which the driver wrote: --runs must "
                                                        "be a path on a filesystem that every node shares"}
    # Unbuffered, so that the log of a killed cell ends where the cell did.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    # Ray picks the GPUs of a task with num_gpus; the cell sees only those (none for a CPU cell).
    env["CUDA_VISIBLE_DEVICES"] = ",".join(ray.get_runtime_context().get_accelerator_ids().get("GPU", []))
    cmd = [sys.executable, "-m", "ridrepro", *argv, "--threads", str(threads)]
    start = time.time()
    with open(log, "a") as f:
        f.write(f"# ridrepro grid --backend ray: {name} on {node}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent).returncode
    result["seconds"] = time.time() - start
    if rc < 0:
        raise CellKilled(name, node, f"killed by signal {-rc}; last lines of {log}:\n{_tail(log)}")
    if rc != 0:
        why = "in use by another process (it lost the race for the run's lock)" if rc == RunLocked.exit_code \
            else f"exit {rc}"
        return {**result, "status": "failed", "reason": f"{why}; last lines of {log}:\n{_tail(log)}"}
    info = json.loads((Path(folder) / "finished.json").read_text())
    return {**result, "status": "done", "acc": info.get("final_acc", info.get("test_acc"))}


# ----------------------------------------------------------------------------- the driver

def _check_args(args):
    gpus = 0.0 if args.gpus_per_cell is None else args.gpus_per_cell
    cpus = 1.0 if args.cpus_per_cell is None else args.cpus_per_cell
    if args.jobs is not None:
        raise ValueError("--jobs is for --backend local; with ray, cells run side by side as the cluster's "
                         "resources allow (--cpus-per-cell, --gpus-per-cell)")
    if gpus > 1 and gpus != int(gpus):
        raise ValueError(f"--gpus-per-cell {gpus:g}: Ray shares a GPU only below 1; above, ask for whole GPUs")
    if args.device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    elif args.device != ("cuda" if gpus > 0 else "cpu"):
        raise ValueError(f"--device {args.device} with --gpus-per-cell {gpus:g}: use --device auto (or cuda with "
                         "GPUs per cell, cpu without); Ray chooses each cell's GPU")
    threads = args.threads or max(1, int(cpus))
    return gpus, cpus, device, threads


def _connect(address):
    import ray
    if address is None:
        # A private cluster on this machine; address="local" so that RAY_ADDRESS or a running cluster is not used.
        # Tasks pass only small dicts around: a small object store is plenty.
        return ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="warning",
                        object_store_memory=100 * 2 ** 20)
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():  # fail in seconds, not after Ray's long connection retries
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            raise ValueError(f"cannot reach a Ray cluster at {address} ({err}); start one with `ray start --head` "
                             "or check --address") from None
    try:
        return ray.init(address=address, logging_level="warning")
    except (ConnectionError, RuntimeError) as err:
        hint = "" if os.environ.get("RAY_AUTH_MODE") else \
            " (a cluster with token authentication needs RAY_AUTH_MODE=token here too, and its token)"
        raise ValueError(f"cannot connect to a Ray cluster at {address}: {err}{hint}") from None


def _check_shared(ray, marker):
    """A task pinned to each node checks that it sees the marker file the driver wrote under --runs."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    check = ray.remote(num_cpus=0)(sees_marker)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    seen = ray.get([check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(str(marker))
                    for n in nodes], timeout=300)
    blind = [node for node, ok in seen if not ok]
    if blind:
        raise ValueError(f"{', '.join(blind)} cannot see {marker}: --runs must be a path on a filesystem that "
                         "every node of the Ray cluster shares (NFS, Lustre, ...), the same path everywhere")
    return len(nodes)


def run_grid(args):
    from ridrepro.train.grid import cell_args, grid_methods, grid_tasks, is_finished
    gpus, cpus, device, threads = _check_args(args)
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'ray[default]' (the version in requirements.txt)") \
            from None
    protocol = get_protocol(args.protocol)
    # Absolute paths: the tasks run on other nodes, in other working directories.
    root = Path(args.runs).resolve()
    if args.data:
        args.data = str(Path(args.data).resolve())
    tasks = grid_tasks(protocol, args.seeds, grid_methods(protocol, args.methods), root)
    todo = [t for t in tasks if not is_finished(t[0], t[2])]  # a teacher must also match its sha256
    print(f"grid {protocol.name}: {len(tasks)} runs, {len(tasks) - len(todo)} finished, {len(todo)} to run, "
          f"ray: {cpus:g} CPUs and {gpus:g} GPUs per cell, {threads} threads", flush=True)
    if not todo:  # nothing to do: no cluster, no files touched
        print(f"grid {protocol.name}: {len(tasks)} finished, 0 failed")
        return 0
    logs = root / protocol.name / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    marker = root / f".ridrepro-ray-{uuid.uuid4().hex[:12]}"
    marker.write_text("written by the ridrepro grid driver; every Ray node must see it\n")
    start = time.time()
    try:
        _connect(args.address)
        res = ray.cluster_resources()
        nodes = _check_shared(ray, marker)
        print(f"ray cluster: {nodes} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; "
              f"runs in {root}", flush=True)
        if cpus > res.get("CPU", 0) or gpus > res.get("GPU", 0):
            raise ValueError(f"a cell needs {cpus:g} CPUs and {gpus:g} GPUs; the cluster has {res.get('CPU', 0):g} "
                             f"and {res.get('GPU', 0):g}")
        cell = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=[CellKilled])(run_cell)
        # Cells that can share a node's memory (or a GPU's): they all check it for their teacher caches at once.
        side_by_side = math.ceil(1 / gpus) if gpus > 0 else max(
            [int(n["Resources"].get("CPU", 0) // cpus) for n in ray.nodes() if n["Alive"]] + [1])
        shared = cell_args(args, root, device, side_by_side)
        refs, deps, todo_names = {}, {}, {t[0] for t in todo}
        for name, argv, folder, needs in todo:  # grid_tasks lists a cell after the cells it needs
            # A dependency that is finished, or not in this grid (the cell then makes it itself, as distil does),
            # is not waited for.
            deps[name] = [d for d in needs if d in todo_names]
            refs[name] = cell.options(name=name).remote(name, [*argv, *shared], str(folder), str(logs / f"{name}.log"),
                                                        str(marker), threads, *(refs[d] for d in deps[name]))
        return _report(ray, protocol.name, refs, deps, len(tasks) - len(todo), start)
    finally:
        marker.unlink(missing_ok=True)
        ray.shutdown()


def _report(ray, protocol, refs, deps, finished_before, start):
    names = {ref: name for name, ref in refs.items()}
    pending, done, failed, skipped = list(refs.values()), [], [], []
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        name = names[ready[0]]
        try:
            r = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            r = _from_error(ray, name, err, refs, deps)
        if r["status"] == "done":
            done.append(name)
            acc = "-" if r["acc"] is None else f"{r['acc']:.4f}"
            print(f"done {name}: accuracy {acc}, {r['seconds']:.0f} s on {r['node']}", flush=True)
        elif r["status"] == "skipped":
            skipped.append(name)
            print(f"skip {name}: {r['reason']}", flush=True)
        else:
            failed.append(name)
            print(f"FAILED {name} on {r['node']}: {r['reason']}", flush=True)
    print(f"grid {protocol}: {finished_before + len(done)} finished, {len(failed)} failed, {len(skipped)} skipped, "
          f"{time.time() - start:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed or skipped else 0


def _from_error(ray, name, err, refs, deps):
    """A task that raised: its own cell was killed too often, or Ray passed on a dependency's error."""
    for d in deps[name]:
        try:
            ray.get(refs[d], timeout=0)
        except ray.exceptions.GetTimeoutError:
            pass
        except ray.exceptions.RayError:
            return {"name": name, "status": "skipped", "reason": f"needs {d}, which did not finish"}
    cause = getattr(err, "cause", None)
    if isinstance(cause, CellKilled):
        return {"name": name, "status": "failed", "node": cause.node,
                "reason": f"{cause.reason}\n(retried {RETRIES} times)"}
    return {"name": name, "status": "failed", "node": "?", "reason": f"{type(err).__name__}: {err}"}
