"""Entry point of ``dockyard``. ``--version`` answers before click is imported (the 100 ms budget),
and so does a plugin command with a fast path (``dockyard run``: :mod:`dockyard.cli.fast`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        from dockyard import __version__

        print(f"dockyard {__version__}")
        return 0
    from dockyard.cli.fast import dispatch

    code = dispatch(args)
    if code is not None:
        return code
    from dockyard.cli.root import cli

    try:
        cli.main(args=args, prog_name="dockyard", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
