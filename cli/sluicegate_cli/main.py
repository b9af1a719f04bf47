"""The ``sluicegate`` entry point: one subcommand per job, each owned by the package that does it."""

from __future__ import annotations

import importlib
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
    for name in NOT_LOADED.get(command, ()):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    module = importlib.import_module(COMMANDS[command][0])
    run: Callable[[Sequence[str]], int] = module.main
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
