"""`python -m emotalk COMMAND ...`: each command lives in emotalk/cli/<command>.py."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from emotalk.errors import EmoTalkError

# Order shown in --help; each name is a module in emotalk/cli.
COMMANDS = ["render", "train", "check", "preprocess", "speak", "eval", "sync", "assets", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emotalk",
        description="EmoTalk: emotional 3D Gaussian talking heads. Run 'python -m emotalk COMMAND -h'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"emotalk.cli.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EmoTalkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        if os.environ.get("EMOTALK_DEBUG"):
            raise
        import traceback

        traceback.print_exc()
        print("error: an unexpected failure (above). Please report it with the command you ran.",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
