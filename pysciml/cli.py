"""The ``pysciml`` command.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``handler`` to a ``_run_<name>(args) -> int`` function; register it in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
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


# --------------------------------------------------------------------------- plumbing

_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_doctor,)


def _print(text: str) -> None:
    """Print, degrading characters the terminal cannot encode instead of failing."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, errors="replace").decode(encoding))


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
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
