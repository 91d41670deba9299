"""python -m distributed.checkpoint inspect PATH | consolidate PATH OUT

Exit status: 0 on success; 1 when `inspect` finds shard files that fail verification (missing, of the
wrong size, not regular files, headers or SHA-256 that do not match the manifest: the report says
which); 2 for anything it cannot read or write at all (a missing, malformed or crafted pointer or
manifest, an output it must refuse, a usage error). Every failure ends with one `error: ...` line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import CheckpointError, consolidate, inspect


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _print_inspection(info: dict) -> None:
    print(f"checkpoint   {info['path']} ({info['save']})")
    print(f"saved at     world size {info['world_size']}, {info['created']}")
    if info["optimizer"]:
        print(f"optimizer    {info['optimizer']}")
        for i, group in enumerate(info["param_groups"]):
            settings = ", ".join(f"{k}={v}" for k, v in group.items())
            print(f"  group {i}    {settings}")
    if info["model"]:
        print(f"model        {len(info['model'])} entries")
        for name, shape, dtype in info["model"]:
            print(f"  {name:<40} {str(shape):<18} {dtype}")
    print(f"files        {len(info['files'])}, {info['total_bytes']:,} bytes")
    for name, size in info["files"]:
        print(f"  {name}  {size:,} bytes")
    checks = info["checksums"]
    print("checksums    " + ("ok" if checks == "ok" else "FAILED\n  " + "\n  ".join(checks)))
    if info["extra"]:
        print(f"extra        {info['extra']}")


def main(argv=None) -> int:
    parser = _Parser(prog="python -m distributed.checkpoint",
                     description="Inspect or consolidate a lucid distributed checkpoint.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    show = commands.add_parser("inspect", help="world size, optimizer, parameters, bytes, checksum status")
    show.add_argument("path")
    merge = commands.add_parser("consolidate", help="write one file that lucid.load reads in one process")
    merge.add_argument("path")
    merge.add_argument("out")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            info = inspect(args.path)
            _print_inspection(info)
            if info["checksums"] != "ok":
                print(f"error: {len(info['checksums'])} of {len(info['files'])} shard files failed verification: "
                      + _one_line("; ".join(info["checksums"])), file=sys.stderr)
                return 1
            return 0
        consolidate(args.path, args.out)
        print(f"wrote {args.out}")
        return 0
    except CheckpointError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
