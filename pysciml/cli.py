"""The ``pysciml`` command.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``handler`` to a ``_run_<name>(args) -> int`` function; register it in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import platform
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["main", "build_parser", "doctor_report"]


# --------------------------------------------------------------------------- doctor


def _pysciml_version() -> str:
    try:
        import pysciml

        version = getattr(pysciml, "__version__", None)
        if isinstance(version, str):
            return version
    except Exception:  # a broken package must not break the diagnosis
        pass
    try:
        return importlib.metadata.version("pysciml")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _torch_report() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:
        return {"torch": None, "torch_error": f"{type(exc).__name__}: {exc}"}

    cuda_devices = []
    cuda_available = bool(torch.cuda.is_available())
    if cuda_available:
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            cuda_devices.append(
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "capability": f"{major}.{minor}",
                }
            )
    mps_backend = getattr(torch.backends, "mps", None)
    mps_available = bool(mps_backend is not None and mps_backend.is_available())
    return {
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda": {
            "available": cuda_available,
            "version": torch.version.cuda,
            "devices": cuda_devices,
        },
        "mps": {"available": mps_available},
        "default_dtype": str(torch.get_default_dtype()),
    }


def doctor_report() -> dict[str, Any]:
    """Everything ``pysciml doctor`` prints, as a JSON-serialisable dict."""
    from pysciml.julia.environment import julia_status

    report: dict[str, Any] = {
        "pysciml": _pysciml_version(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
    }
    report.update(_torch_report())
    if report["torch"] is None:
        native = {
            "available": False,
            "reason": f"torch cannot be imported: {report['torch_error']}",
        }
    else:
        native = {"available": True, "reason": ""}
    report["runtimes"] = {"native": native, "julia": dataclasses.asdict(julia_status())}
    return report


def _format_doctor(report: dict[str, Any]) -> str:
    lines = [
        f"pysciml        {report['pysciml']}",
        f"python         {report['python']} ({report['python_executable']})",
        f"platform       {report['platform']}",
    ]
    if report["torch"] is None:
        lines.append(f"torch          not importable: {report['torch_error']}")
    else:
        cuda = report["cuda"]
        lines += [
            f"torch          {report['torch']}",
            f"cpu threads    {report['cpu_threads']}",
            f"default dtype  {report['default_dtype']}",
        ]
        if cuda["available"]:
            lines.append(f"cuda           available (CUDA {cuda['version']})")
            for dev in cuda["devices"]:
                lines.append(
                    f"  cuda:{dev['index']}       {dev['name']} (capability {dev['capability']})"
                )
        else:
            lines.append("cuda           unavailable")
        if report["mps"]["available"]:
            lines.append("mps            available")
    lines.append("runtimes")
    for name, status in report["runtimes"].items():
        if status["available"]:
            line = f"  {name}: available"
            if status.get("executable"):
                line += f" ({status['executable']})"
            lines.append(line)
        else:
            lines.append(f"  {name}: unavailable \u2014 {status['reason']}")
        if status.get("hint"):
            lines.append(f"    hint: {status['hint']}")
    return "\n".join(lines)


def _add_doctor(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="report versions, devices and which runtimes can run",
        description="Report pysciml, Python and torch versions, devices, and the runtimes "
        "(native, julia) that can run here. Never starts Julia.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    report = doctor_report()
    if args.json:
        _print(json.dumps(report, indent=2))
    else:
        _print(_format_doctor(report))
    return 0


# --------------------------------------------------------------------------- data sets


class _UsageError(Exception):
    """A user error found while parsing CLI values (exit status 2)."""


def _parse_value(text: str) -> Any:
    """A ``--param`` value: a Python literal (number, tuple, bool) or else the string itself."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise _UsageError(f"--param: expected NAME=VALUE, got {item!r}")
        params[name.strip()] = _parse_value(value.strip())
    return params


def _algorithm(name: str | None):
    if name is None:
        return None
    import pysciml

    cls = getattr(pysciml, name, None)
    if not (isinstance(cls, type) and issubclass(cls, pysciml.AbstractAlgorithm)
            and not name.startswith("Abstract")):
        known = sorted(n for n in dir(pysciml) if not n.startswith(("Abstract", "_"))
                       and isinstance(getattr(pysciml, n), type)
                       and issubclass(getattr(pysciml, n), pysciml.AbstractAlgorithm))
        raise _UsageError(f"--alg: unknown algorithm {name!r}; known: {', '.join(known)}")
    return cls()


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's preemption), handled like Ctrl-C."""


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`_Terminated` so that generation stops between
    chunks' writes as on Ctrl-C (the partial file is closed cleanly)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _add_generate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="solve random trajectories of a model into an HDF5 file",
        description="Solve N members of MODEL (random initial states, optionally random "
        "parameters) into an HDF5 file, written atomically (FILE.partial until complete) and "
        "resumable: rerunning an interrupted command skips the chunks already written.",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a registry name (see 'pysciml models') or package.module:Class")
    parser.add_argument("--n", type=int, required=True, help="number of trajectories")
    parser.add_argument("--out", required=True, metavar="FILE.h5", help="the file to write")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a model constructor keyword, e.g. --param forcing=8 --param n=40 "
                        "(repeatable)")
    parser.add_argument("--t0", type=float, help="initial time (default: the model's)")
    parser.add_argument("--t1", type=float, help="final time (default: the model's)")
    parser.add_argument("--nt", type=int, default=101,
                        help="number of save times, t0 and t1 included (default 101)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    parser.add_argument("--chunk-size", type=int, default=64,
                        help="trajectories per solve and per resumable chunk (default 64)")
    parser.add_argument("--sample-parameters", nargs="?", const="all", default=None,
                        metavar="NAMES",
                        help="sample parameters from the model's ranges: all, or a comma list")
    parser.add_argument("--alg", help="solver, e.g. Tsit5 or Rodas5P (default: the model's)")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (1e-6)")
    parser.add_argument("--atol", type=float, default=1e-8, help="absolute tolerance (1e-8)")
    parser.add_argument("--max-steps", type=int, help="step budget of each trajectory")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--compression", choices=("gzip", "lzf", "none"), default="gzip")
    parser.add_argument("--keep-failed", action="store_true",
                        help="store failed trajectories (NaN after the failure) instead of "
                        "stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    parser.add_argument("--no-resume", action="store_true",
                        help="discard FILE.partial of an interrupted run instead of resuming it")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                        help="progress display on stderr (auto: a bar on a terminal)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    import torch

    from pysciml.data import generate, resolve_model
    from pysciml.data.store import partial_path

    params = _parse_params(args.param)
    alg = _algorithm(args.alg)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise _UsageError(f"--device: {args.device} requested but CUDA is not available")
    instance = resolve_model(args.model, params).model  # validates the model and --param
    t0, t1 = getattr(instance, "default_tspan", (None, None))
    t0 = t0 if args.t0 is None else args.t0
    t1 = t1 if args.t1 is None else args.t1
    if t0 is None or t1 is None:
        raise _UsageError("--t0/--t1: the model has no default_tspan; give both")
    if args.nt < 2:
        raise _UsageError(f"--nt: expected at least 2 save times, got {args.nt}")
    if not t1 > t0:
        raise _UsageError(f"--t1: expected t1 > t0, got t0={t0}, t1={t1}")
    sample: Any = False
    if args.sample_parameters is not None:
        spec = args.sample_parameters.strip()
        sample = True if spec == "all" else [x.strip() for x in spec.split(",") if x.strip()]
    solve_kwargs = {} if args.max_steps is None else {"max_steps": args.max_steps}
    try:
        with _terminate_as_interrupt():
            path = generate(
                args.model, args.out, args.n,
                t=torch.linspace(t0, t1, args.nt, dtype=torch.float64), seed=args.seed,
                chunk_size=args.chunk_size, sample_parameters=sample, alg=alg, rtol=args.rtol,
                atol=args.atol, device=args.device, dtype=getattr(torch, args.dtype),
                model_kwargs=params, solve_kwargs=solve_kwargs,
                on_failure="keep" if args.keep_failed else "raise",
                compression=None if args.compression == "none" else args.compression,
                overwrite=args.overwrite, resume=not args.no_resume,
                progress="none" if args.quiet else args.progress)
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        print(f"pysciml generate: {how}; finished chunks are kept in "
              f"{partial_path(args.out)}: rerun the same command to resume", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    if not args.quiet:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _add_inspect(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show what a trajectory file holds",
        description="Print a trajectory file's model, shapes, dtypes, member counts, "
        "metadata, chunking and compression (a FILE.partial of an interrupted run too).",
    )
    parser.add_argument("file", metavar="FILE.h5")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_run_inspect)


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"


def _format_inspect(info: dict[str, Any]) -> str:
    a = info["attributes"]
    state = "(" + ", ".join(str(s) for s in a.get("state_shape", [])) + \
        ("," if len(a.get("state_shape", [])) == 1 else "") + ")"
    done = "complete" if info["complete"] else \
        f"PARTIAL: {info['chunks_done']} of {info['chunks']} chunks done"
    status = ", ".join(f"{k} {v}" for k, v in sorted(info["status"].items()))
    lines = [
        f"file        {info['path']} ({_size(info['file_bytes'])}, {done})",
        f"model       {a.get('model')} ({a.get('model_class')})",
        f"kwargs      {json.dumps(a.get('model_kwargs', {}))}",
        f"members     {info['members']} ({status})",
        f"time        t0={info['time']['t0']:g}  t1={info['time']['t1']:g}  "
        f"nt={info['time']['nt']}",
        f"state       {state} {a.get('dtype')}",
    ]
    grid = {k: v for k, v in a.get("grid", {}).items() if k != "state_shape"}
    if grid:
        lines.append("grid        " + "  ".join(f"{k}={v}" for k, v in grid.items()))
    lines.append("parameters")
    sampled = a.get("sample_parameters", {})
    for name, stats in info["parameters"].items():
        how = (f"sampled from [{sampled[name][0]:g}, {sampled[name][1]:g}]" if name in sampled
               else "fixed")
        values = (f"min {stats['min']:.6g}  max {stats['max']:.6g}  mean {stats['mean']:.6g}"
                  if stats else "(none generated)")
        lines.append(f"  {name:<14}{how:<30}{values}")
    lines += [
        f"solver      {a.get('solver')}  rtol={a.get('rtol'):g}  atol={a.get('atol'):g}  "
        f"on {a.get('device')}",
        f"seed        {a.get('seed')}  ({a.get('seed_derivation')})",
        f"chunks      {a.get('chunk_size')} trajectories per generation chunk",
        "datasets",
    ]
    width = max(len(name) for name in info["datasets"]) + 2
    shape_width = max(len(str(tuple(d["shape"]))) for d in info["datasets"].values()) + 2
    for name, d in info["datasets"].items():
        shape = "(" + ", ".join(map(str, d["shape"])) + ")"
        chunks = "contiguous" if d["chunks"] is None else \
            "chunks (" + ", ".join(map(str, d["chunks"])) + ")"
        comp = d["compression"] or "uncompressed"
        if d["compression_opts"] is not None:
            comp += f"({d['compression_opts']})"
        if d["shuffle"]:
            comp += "+shuffle"
        lines.append(f"  {name:<{width}}{shape:<{shape_width}}{d['dtype']:<9}{chunks:<28}{comp:<18}"
                     f"{_size(d['bytes'])} -> {_size(d['stored_bytes'])}")
    lines.append(f"written     {a.get('created')} .. {a.get('completed', '(not completed)')} by "
                 f"pysciml {a.get('pysciml_version')}, torch {a.get('torch_version')}, "
                 f"h5py {a.get('h5py_version')}; schema {a.get('schema')} "
                 f"v{a.get('schema_version')}")
    return "\n".join(lines)


def _run_inspect(args: argparse.Namespace) -> int:
    from pysciml.data import describe

    info = describe(args.file)
    _print(json.dumps(info, indent=2) if args.json else _format_inspect(info))
    return 0


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list the models 'pysciml generate' knows",
        description="List the registered physical models with their parameters and ranges.")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from pysciml.data import available_models

    rows = []
    for name, cls in sorted(available_models().items()):
        rows.append({"name": name, "class": f"{cls.__module__}:{cls.__qualname__}",
                     "stiff": bool(getattr(cls, "stiff", False)),
                     "default_tspan": list(getattr(cls, "default_tspan", ())),
                     "parameters": list(getattr(cls, "parameter_names", ())),
                     "parameter_ranges": {k: list(v) for k, v in
                                          getattr(cls, "parameter_ranges", {}).items()}})
    if args.json:
        _print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            ranges = ", ".join(f"{k} in [{lo:g}, {hi:g}]"
                               for k, (lo, hi) in row["parameter_ranges"].items())
            _print(f"{row['name']:<18}{'stiff' if row['stiff'] else 'non-stiff':<11}"
                   f"tspan {tuple(row['default_tspan'])}  {ranges}")
    return 0


# --------------------------------------------------------------------------- plumbing

_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_doctor, _add_generate, _add_inspect, _add_models)


def _print(text: str) -> None:
    """Print, degrading characters the terminal cannot encode instead of failing."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, errors="replace").decode(encoding))


_USER_ERRORS = (_UsageError, ValueError, TypeError, ImportError, FileNotFoundError,
                FileExistsError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pysciml",
        description="pysciml: differential equations in PyTorch autograd.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``pysciml`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except _USER_ERRORS as exc:
        # bad input: one line naming what is wrong, no traceback (argparse's convention)
        print(f"pysciml {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from pysciml.data import GenerationError
        from pysciml.data.store import partial_path

        if not isinstance(exc, GenerationError):
            raise
        print(f"pysciml {args.command}: error: {exc} (--keep-failed); finished chunks are "
              f"kept in {partial_path(args.out)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
