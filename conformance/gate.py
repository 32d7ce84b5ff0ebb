"""The conformance gate: every registry op and variant, the model layers and the tiny pipeline on one device.

Writes report.json, junit.xml and report.md (op x variant x device: cases run, worst error, verdict; coverage,
and every skip with its reason) into the report folder as rows finish, so a run that is stopped keeps what it
found; returns non-zero when anything failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

from sdcl.conformance.report import Row, write_reports
from sdcl.conformance.runner import References, _note, check_row, merge_parts, row_configs, skip_reason
from sdcl.registry import DTYPES, REGISTRY


def _policy_row(rt, device: str) -> Row:
    """An informational row: which variants the model checks ran through ("op:variant", "(float16)" after those of
    the float16 checks, whose candidates are the variants that implement float16)."""
    used = sorted({f"{op}:{v}" + (" (float16)" if memo.endswith(",float16") else "")
                   for (op, memo), (v, _) in rt.policy.choices.items()})
    return Row("model", "variants used by the model checks", "policy", "-", device, cases=len(used),
               metric=", ".join(used))


def _line(row: Row) -> str:
    if row.kind == "op":
        return (f"  {row.verdict:4} op {row.name:20} {row.variant:16} {row.dtype:8} {row.cases:4} cases "
                f"rel_l2 {row.worst_rel_l2:.1e}  {row.seconds:6.1f} s  {row.skipped or row.failure[:120]}")
    return f"  {row.verdict:4} model {row.name:40} {row.dtype:8} {row.metric or row.skipped}  {row.failure[:160]}"


# Tasks longest first, so that parallel workers finish together: the model checks, then the ops with the most
# variants and builds (a task is one op, whose rows share their cases' references).
_WEIGHT = {"conv2d": 9, "attention": 8, "linear": 7, "matmul": 6, "batched_matmul": 6, "group_norm_silu": 4,
           "group_norm": 3, "layer_norm": 3, "softmax": 3, "geglu": 2}


def _tasks(ops: list, skip_models: bool, profile: str = "ci") -> list:
    """The models, then the ops longest first. Under ci a task is an op (its rows share their derandomized cases'
    references); under dev and thorough, which check every knob setting and run for long, a task is one row
    ("op:variant:dtype"), so the reports grow row by row."""
    if profile != "ci":
        return row_tasks(ops, skip_models)
    return ([] if skip_models else ["models"]) + sorted(ops, key=lambda n: -_WEIGHT.get(n, 1))


def row_tasks(ops: list, skip_models: bool) -> list:
    """The models, then one task per row ("op:variant:dtype"), the longest ops first."""
    ops = sorted(ops, key=lambda n: -_WEIGHT.get(n, 1))
    return ([] if skip_models else ["models"]) + [f"{op}:{v.name}:{d}" for op in ops
                                                  for v in REGISTRY[op].variants for d in v.row_dtypes()]


_WORKER: dict = {}     # a worker process's Runtime, made once


def worker_runtime(selector: str | None):
    """This process's Runtime of the selected device, made at its first use."""
    from sdcl.opencl_impl.devices import select_device
    from sdcl.opencl_impl.runtime import Runtime

    if _WORKER.get(selector) is None:
        _WORKER[selector] = Runtime(select_device(selector))
    return _WORKER[selector]


def run_task(selector: str | None, task: str, profile: str, force: dict | None = None) -> list:
    """The rows of one task (an op's variants x dtypes, or "models") on the selected device, in this process."""
    from sdcl.opencl_impl.selection import policy_for

    import sdcl.conformance.profiles  # noqa: F401  (registers the profiles in a fresh worker process)

    rt = worker_runtime(selector)
    device = f"{rt.info['platform']} / {rt.info['device']}"
    if task == "models":
        from sdcl.conformance.models import check_models
        # the models run as a user's pipeline runs them: with the device's selection policy (tuning table), with
        # the variants `force` names in place of the policy's choice for their ops
        rt.policy = policy_for(rt, force)
        try:
            rows = check_models(rt, device, profile)
            return rows + [_policy_row(rt, device)]
        finally:
            rt.policy = None
    refs = _WORKER.setdefault("refs", References())
    task, _, part = task.partition("@")
    spec = REGISTRY[task.split(":")[0]]
    rows = [(v, d) for v in spec.variants for d in v.row_dtypes()]
    if ":" in task:     # one row of the op: "op:variant:dtype", or one knob setting of it: "op:variant:dtype@k"
        rows = [(spec.variant(task.split(":")[1]), task.split(":")[2])]
    return [check_row(rt, spec, v.name, dtype, profile, refs=refs, device=device,
                      configs=row_configs(rt, spec, v, profile), part=int(part) if part else None)
            for v, dtype in rows]


def splits_rows(info: dict) -> bool:
    """Whether the gate spreads a row's knob settings over its workers on this device (its device_info): not on a
    CPU device."""
    return info.get("type") != "CPU"


def setting_counts(selector: str | None, tasks: list, profile: str, every_device: bool = False) -> dict:
    """Row task ("op:variant:dtype") -> how many knob settings it checks on this device (row_configs), for each row
    of `tasks` with more than one that the device does not skip; none on a CPU device, whose kernels run on every
    core already (one dev row split over two processes on 2 cores: 37.4 s against 31.8 s in one), unless
    `every_device` (the settings checked one after another in this process, whose Runtime this one becomes)."""
    from sdcl.opencl_impl.devices import device_info, select_device
    from sdcl.opencl_impl.runtime import Runtime

    device = select_device(selector)
    counts = {}
    if not every_device and not splits_rows(device_info(device)):   # (no context made for rows not split)
        return counts
    rt = worker_runtime(selector) if every_device else Runtime(device)
    for task in tasks:
        if task.count(":") != 2:
            continue
        op, variant, dtype = task.split(":")
        spec = REGISTRY[op]
        v = spec.variant(variant)
        n = 0 if skip_reason(rt, spec, v, dtype) else len(row_configs(rt, spec, v, profile))
        if n > 1:
            counts[task] = n
    return counts


def run(selector: str | None, ops: list, profile: str, folder: Path, skip_models: bool = False, jobs: int = 1,
        log=print, force: dict | None = None, rows: list | None = None, resume: bool = False) -> list:
    """Every row of these ops (and the model checks) on the selected device, in `jobs` worker processes (1: in
    this process); the reports rewritten as each task's rows arrive, in registry order. `rows`
    ("op:variant:dtype", ...): these rows only, in place of every row of `ops`. A row split over the workers by
    knob setting keeps each setting's result in the folder's SETTINGS_FILE as it arrives; `resume`: the settings a
    stopped run into this folder checked (same device, profile and number of settings) are taken from there
    instead of checked again."""
    if rows:
        ops = list(dict.fromkeys(r.split(":")[0] for r in rows))
        tasks = ([] if skip_models else ["models"]) + list(rows)
    else:
        tasks = _tasks(ops, skip_models, profile)
    done: dict = {}
    t0 = time.perf_counter()
    order = (["models"] if not skip_models else []) + [t for op in ops for t in tasks if t.split(":")[0] == op]
    # Outside ci a row with several knob settings is a task per setting ("op:variant:dtype@k"): over several workers
    # on a GPU, so that no row takes longer than its slowest setting (the host's cores share it); in one process
    # (jobs 1), on any device, one after another, so that each setting is kept as it arrives (SETTINGS_FILE) and a
    # stopped run is continued with --resume (a thorough conv2d row ran for over 90 minutes on llvmpipe)
    parts = setting_counts(selector, tasks, profile, every_device=jobs <= 1) if profile != "ci" else {}
    work = [p for t in tasks for p in ([f"{t}@{k}" for k in range(parts[t])] if t in parts else [t])]
    pieces: dict = {}
    finished: set = set()       # the tasks of `work` that reported
    device = device_name(selector)
    kept = _kept_settings(folder, device, profile, parts) if resume else {}
    if parts and not resume:
        (Path(folder) / SETTINGS_FILE).unlink(missing_ok=True)

    again: dict = {}       # tasks that failed for the host's or device's resources beside the other workers

    def arrived(task: str, rows: list) -> None:
        finished.add(task)
        if task in again:       # (it arrives a second time only from its check alone, below)
            for r in rows:
                _note(r, f"ran out of resources beside {jobs - 1} other worker processes ({again[task][:160]}); "
                         f"checked again alone")
        elif jobs > 1 and any(_starved(r) for r in rows):
            again[task] = next(r.failure for r in rows if _starved(r))
            return
        if "@" in task:         # one knob setting of a row: the row is reported once all its settings are in
            row, k = task.split("@")
            if task not in kept:
                _keep_setting(folder, device, profile, task, parts[row], rows[0])
            pieces.setdefault(row, {})[int(k)] = rows[0]
            if len(pieces[row]) < parts[row]:     # (its progress, for a run stopped before the row is whole)
                log(f"[{time.perf_counter() - t0:5.0f} s] {row} knob setting {k}: {len(pieces[row])} of {parts[row]} "
                    f"in, {rows[0].verdict} at {rows[0].cases} cases, {rows[0].seconds:.1f} s"
                    + (f": {rows[0].failure[:300]}" if rows[0].failure else ""))
                return
            task, rows = row, [merge_parts([pieces[row][i] for i in range(parts[row])])]
        done[task] = rows
        for row in rows:
            log(f"[{time.perf_counter() - t0:5.0f} s, {len(done)}/{len(tasks)} tasks]" + _line(row))
        ordered = [r for t in order if t in done for r in done[t] if r.kind == "op"] + \
            [r for t in order if t in done for r in done[t] if r.kind != "op"]
        write_reports(ordered, folder, device, profile)

    if kept:
        log(f"{len(kept)} knob setting(s) taken from {Path(folder) / SETTINGS_FILE} (--resume)")
        for task in kept:
            arrived(task, [kept[task]])
        work = [t for t in work if t not in kept]
    if jobs <= 1:
        for task in work:
            arrived(task, run_task(selector, task, profile, force))
        pending = []
    else:
        pending = work
    # the knob settings of a row share their SD cases' references through a folder (each computed once, by the
    # first worker to need it)
    shared = tempfile.TemporaryDirectory(prefix="sdcl-gate-refs-") if parts else None

    def over_workers(pending: list, n: int) -> None:
        while pending:
            crashed = _pool_round(selector, pending, profile, force, n, arrived, shared and shared.name)
            if crashed is None:
                break
            # A worker died (a kernel or driver crash, memory): the pool is gone with the tasks it was running. Each
            # task that had started and not finished runs again alone, row by row, so the row that kills its process
            # is named and fails, and the rest of the run goes on.
            for task in crashed or [t for t in pending if t not in finished][:1]:   # (none marked: died starting up)
                arrived(task, [r for t in _split(task) for r in _run_alone(selector, t, profile, force)])
            pending = [t for t in pending if t not in finished]

    over_workers(pending, jobs)
    # A task that ran out of memory or resources while the other workers held theirs (16 contexts of a CPU-style
    # kernel's private arrays on one GPU) is checked again once the rest is done, in one worker process with none
    # beside it: what it does alone is its result.
    if again:
        log(f"{len(again)} task(s) ran out of resources beside the other workers, checked again alone: "
            + ", ".join(again)[:300] + f" (first: {next(iter(again.values()))[:200]})")
        finished.difference_update(again)
        over_workers(list(again), 1)
    if shared:
        shared.cleanup()
    return [r for t in order for r in done[t] if r.kind == "op"] + [r for t in order for r in done[t] if r.kind != "op"]


SETTINGS_FILE = "settings.jsonl"   # a split row's knob settings as they arrive: one JSON line each


def _keep_setting(folder, device: str, profile: str, task: str, of: int, row: Row) -> None:
    """Append one knob setting's row (task "op:variant:dtype@k", one of `of`) to the folder's SETTINGS_FILE."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / SETTINGS_FILE, "a") as f:
        f.write(json.dumps({"device": device, "profile": profile, "task": task, "of": of, "row": row.__dict__}) + "\n")


def _kept_settings(folder, device: str, profile: str, parts: dict) -> dict:
    """Task ("op:variant:dtype@k") -> its Row, of the settings a run into this folder kept for this device and
    profile, for the rows still split into as many settings."""
    path = Path(folder) / SETTINGS_FILE
    kept = {}
    for line in (path.read_text().splitlines() if path.exists() else []):
        d = json.loads(line)
        if d["device"] == device and d["profile"] == profile and parts.get(d["task"].split("@")[0]) == d["of"]:
            kept[d["task"]] = Row(**d["row"])
    return kept


def _marked(marks: str, selector: str | None, task: str, profile: str, force: dict | None) -> list:
    """run_task in a pool worker, with a marker file present while it runs (the tasks a dead worker held)."""
    mark = Path(marks) / _mark_name(task)
    mark.write_text(str(os.getpid()))
    rows = run_task(selector, task, profile, force)
    mark.unlink()
    return rows


def _mark_name(task: str) -> str:
    return task.replace(":", "__")


# What a check that ran short of the host's or the device's memory says (pyopencl's status names, numpy's
# MemoryError), and Hypothesis's verdict on a failure that did not recur when replayed (one that depended on what
# the other workers held at the time)
_STARVED = ("OUT_OF_HOST_MEMORY", "OUT_OF_RESOURCES", "MEM_OBJECT_ALLOCATION_FAILURE", "MemoryError", "FlakyFailure")


def _starved(row: Row) -> bool:
    return not row.passed and any(s in row.failure for s in _STARVED)


def _share_references(folder: str) -> None:
    """A pool worker's initializer: its references of SD cases shared through `folder` (References)."""
    _WORKER["refs"] = References(shared=folder)


def _pool_round(selector, pending: list, profile: str, force, jobs: int, arrived, shared: str | None = None) -> list:
    """The pending tasks over `jobs` worker processes, each task's rows handed to `arrived` as they come; returns
    the tasks that were running in a worker when one died (None when none did). `shared`: a folder through which
    the workers share their SD cases' references."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    threads = worker_threads(jobs)
    with tempfile.TemporaryDirectory(prefix="sdcl-gate-") as marks, _environ(threads):
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                   **({"initializer": _share_references, "initargs": (shared,)} if shared else {}))
        try:
            futures = {pool.submit(_marked, marks, selector, task, profile, force): task for task in pending}
            got = set()
            for f in as_completed(futures):
                try:
                    rows = f.result()
                except BrokenProcessPool:
                    break
                got.add(futures[f])
                arrived(futures[f], rows)
            else:
                pool.shutdown()
                return None
            for f, task in futures.items():      # finished before the pool broke
                if task not in got and f.done() and not f.cancelled() and f.exception() is None:
                    arrived(task, f.result())
            _stop(pool)
            return [t for t in pending if (Path(marks) / _mark_name(t)).exists()]
        except BaseException:       # an interruption or a failed worker: stop the workers, do not wait for them
            _stop(pool)
            raise


# The BLAS and OpenMP thread counts a worker process reads as it starts (numpy's OpenBLAS, MKL, torch)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_threads(jobs: int) -> dict:
    """The thread counts of `jobs` workers: the host's cores shared among them, where the user set none. Else each
    worker's OpenBLAS starts a thread per core, and its idle threads spin a while after each call: 16 workers on a
    16-core GPU host would run 256 threads."""
    n = str(max(1, (os.cpu_count() or 1) // max(jobs, 1)))
    return {k: n for k in THREAD_VARIABLES if k not in os.environ}


@contextlib.contextmanager
def _environ(values: dict):
    """os.environ with `values` added while the block runs (the worker processes started in it inherit them)."""
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)


def _stop(pool) -> None:
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _split(task: str) -> list:
    """A task as its rows' tasks ("op" -> "op:variant:dtype" ...; a row or "models" stays itself)."""
    if task == "models" or task.count(":") == 2:
        return [task]
    return row_tasks([task], skip_models=True)


def _alone(conn, selector, task, profile, force) -> None:
    conn.send(run_task(selector, task, profile, force))
    conn.close()


def _run_alone(selector: str | None, task: str, profile: str, force: dict | None) -> list:
    """One task's rows from a process of its own; failing rows naming the death if that process dies."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_alone, args=(send, selector, task, profile, force))
    proc.start()
    send.close()
    try:
        rows = receive.recv()
    except EOFError:
        rows = None
    proc.join()
    return rows if rows is not None else crash_rows(task, device_name(selector), proc.exitcode)


def crash_rows(task: str, device: str, exitcode: int | None) -> list:
    """The failing rows of a task ("models" or "op:variant:dtype") whose process died with this exit code."""
    import signal
    how = (f"killed by {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0 and
           -exitcode in signal.valid_signals() else f"exit code {exitcode}")
    why = (f"the process checking this row died ({how}) before it reported: a kernel that crashes the OpenCL "
           "implementation, or the host out of memory; the row ran alone when this happened")
    if task == "models":
        return [Row("model", "models", "policy", "-", device, passed=False, failure=why)]
    task, _, part = task.partition("@")
    if part:
        why = why.replace("this row", f"this row's knob setting {part} (from 0, in its settings' order)", 1)
    op, variant, dtype = task.split(":")
    return [Row("op", op, variant, dtype, device, passed=False, failure=why)]


def device_name(selector: str | None) -> str:
    from sdcl.opencl_impl.devices import select_device
    d = select_device(selector)
    return f"{d.platform.name.strip()} / {d.name.strip()}"


def default_jobs() -> int:
    """Worker processes by default: one per core, at most 4 (each builds kernels while another checks)."""
    return max(1, min(4, os.cpu_count() or 1))


def parse_ops(text: str | None) -> list:
    """"op,..." -> the op names (default: every op of the registry), each checked against the registry."""
    names = text.split(",") if text else list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; the registry has {list(REGISTRY)}")
    return names


def _check_variant(flag: str, item: str, op: str, variant: str) -> None:
    """A ValueError naming the flag and its item unless `op` is in the registry with a variant `variant`."""
    if op not in REGISTRY:
        raise ValueError(f"{flag} {item}: unknown op {op!r}; the registry has {list(REGISTRY)}")
    names = [v.name for v in REGISTRY[op].variants]
    if variant not in names:
        raise ValueError(f"{flag} {item}: op {op} has no variant {variant!r}; it has {names}")


def parse_force(text: str | None) -> dict:
    """"op:variant,..." -> {op: variant}, each op and variant checked against the registry."""
    force = {}
    for item in (text or "").split(","):
        if not item:
            continue
        op, _, variant = item.partition(":")
        _check_variant("--force", item, op, variant)
        force[op] = variant
    return force


def parse_rows(text: str | None) -> list:
    """"op:variant:dtype,..." -> the rows, each checked against the registry."""
    rows = []
    for item in (text or "").split(","):
        if not item:
            continue
        op, variant, dtype = (item.split(":") + ["", ""])[:3]
        _check_variant("--rows", item, op, variant)
        if dtype not in DTYPES:
            raise ValueError(f"--rows {item}: dtype {dtype!r} is not one of {list(DTYPES)}")
        rows.append(f"{op}:{variant}:{dtype}")
    return rows


def main(args) -> int:
    from sdcl.opencl_impl.devices import device_key, select_device

    names = parse_ops(args.ops)
    rows = parse_rows(getattr(args, "rows", None))
    force = parse_force(getattr(args, "force", None))
    jobs = args.jobs or default_jobs()
    folder = Path(args.report)
    print(f"conformance on {device_key(select_device(args.device))}, profile {args.profile}, {jobs} worker "
          f"process(es); reports in {folder}/", flush=True)
    rows = run(args.device, names, args.profile, folder, args.skip_models, jobs, log=lambda s: print(s, flush=True),
               force=force, rows=rows, resume=getattr(args, "resume", False))
    failed = [r for r in rows if r.verdict == "FAIL"]
    print(f"{len(rows) - len(failed)} passed or skipped, {len(failed)} failed; "
          f"report in {folder}/report.md, report.json, junit.xml")
    return 1 if failed else 0
