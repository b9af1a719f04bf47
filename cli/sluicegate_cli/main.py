"""The ``sluicegate`` entry point: one subcommand per job, each owned by the package that does it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence

# subcommand → (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("sluicegate_operator.render_cli", "CR YAML → sealed config directory, offline"),
    "config": ("sluicegate_sidecar.config_cli", "verify or show a sealed config directory"),
    "sidecar": ("sluicegate_sidecar.serve_cli", "serve the OpenAI-compatible gateway on loopback"),
    "operator": ("sluicegate_operator.operator_cli", "run the operator (kopf) against a cluster"),
    "authority": (
        "sluicegate_operator.authority.authority_cli",
        "serve fleet budget leases from PostgreSQL, standalone",
    ),
    "ledger": ("sluicegate_reports.ledger_cli", "verify, export or summarise a spend ledger"),
    "report": ("sluicegate_reports.report_cli", "savings and invoice reconciliation from ledgers"),
    "import": ("sluicegate_operator.import_cli", "translate a Portkey or LiteLLM config into resources"),
}
# Modules a subcommand's process never needs, kept out of it (``None`` in ``sys.modules`` makes their
# import fail, which their importers expect): httpx loads its command-line client on import when it
# can, and with it rich and pygments: 3.4 MiB of the serving sidecar's resident memory; Starlette loads
# a multipart form parser when one is installed (by a tool beside the sidecar's dependencies), and the
# sidecar parses no forms.
NOT_LOADED: dict[str, tuple[str, ...]] = {"sidecar": ("httpx._main", "python_multipart", "multipart")}
# Environment a subcommand's process starts with unless the variable is already set. frozenlist (an
# aiohttp dependency) is compiled C++ and maps libstdc++ into the process: 1.1 MiB of the sidecar's
# resident memory for a list type aiohttp's client uses only for trace signals, which the sidecar never
# configures; its pure-Python FrozenList costs nothing per request.
ENV_DEFAULTS: dict[str, dict[str, str]] = {"sidecar": {"FROZENLIST_NO_EXTENSIONS": "1"}}
# Packages a subcommand's process imports bare: without running their ``__init__`` (their submodules
# import as usual), exporting the names given (``module:name``); the first use of any other name runs
# the real ``__init__`` then. uvicorn's ``__init__`` imports uvicorn's command line (click, the
# reloader and multiprocessing supervisors): 1.5 MiB of the serving sidecar's resident memory for code
# it never runs (it runs ``uvicorn.server.Server`` with a ``uvicorn.config.Config`` itself).
BARE_PACKAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "sidecar": {"uvicorn": ("uvicorn.config:Config", "uvicorn.server:Server")},
}


def bare_package(name: str, exports: Sequence[str]) -> None:
    """Put ``name`` in ``sys.modules`` without running its ``__init__`` (see ``BARE_PACKAGES``)."""
    spec = importlib.util.find_spec(name)
    if name in sys.modules or spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def rest(attr: str) -> object:  # PEP 562: only for names the package does not have yet
        if attr.startswith("__") and attr not in ("__version__", "__all__"):
            raise AttributeError(attr)
        del package.__getattr__  # once: the real __init__ now fills the same module in
        loader.exec_module(package)
        return getattr(package, attr)

    package.__getattr__ = rest  # type: ignore[method-assign]
    sys.modules[name] = package
    for export in exports:
        source, _, attr = export.partition(":")
        setattr(package, attr, getattr(importlib.import_module(source), attr))


def _usage() -> str:
    lines = ["usage: sluicegate COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append("\n`sluicegate COMMAND --help` for a command's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"sluicegate: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    for variable, value in ENV_DEFAULTS.get(command, {}).items():
        os.environ.setdefault(variable, value)
    for package, exports in BARE_PACKAGES.get(command, {}).items():
        bare_package(package, exports)
    for name in NOT_LOADED.get(command, ()):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    module = importlib.import_module(COMMANDS[command][0])
    run: Callable[[Sequence[str]], int] = module.main
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
