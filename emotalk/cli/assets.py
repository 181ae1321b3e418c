"""List, check and fetch the third-party model files (see emotalk/assets.py for the registry)."""

from __future__ import annotations

import argparse

HELP = "list / fetch / check the model files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "fetch", "check"], help="what to do")
    p.add_argument("names", nargs="*", help="asset names (default: all)")


def run(args: argparse.Namespace) -> int:
    from emotalk import assets

    names = args.names or sorted(assets.REGISTRY)
    for n in names:
        assets.get(n)
    if args.action == "fetch":
        for n, p in assets.fetch_all(names).items():
            print(f"{n:32s} ok  {p}")
        return 0
    bad = 0
    for n in names:
        a = assets.REGISTRY[n]
        st = assets.status(n)
        bad += st != "ok"
        if args.action == "list":
            print(f"{n:32s} {st:8s} {a.size / 1e6:7.1f} MB  {a.licence}  (from {a.carrier})")
        else:
            print(f"{n:32s} {st}")
    if bad and args.action == "check":
        print(f"{bad} missing or corrupt: run {assets.fetch_command()}")
    return 1 if (bad and args.action == "check") else 0
