"""``mmg-data``: download, inspect and import the training data.

    mmg-data download utd-mhad|fsdd DIR [--parts depth,inertial,skeleton] [--from-dir D] [--cafile F]
    mmg-data info utd-mhad|fsdd|sessions|manifest PATH [--check]
    mmg-data import utd-mhad ROOT OUT [--subjects 1,3,5] [--actions 1-27]
    mmg-data cache [--dir D] [--prune-to GB | --clear]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from trainer.data.clip import DataError
from trainer.data.download import SOURCES, DownloadError, download_dataset
from trainer.data.splits import parse_int_list


def _int_list(text: str) -> list[int]:
    try:
        return parse_int_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    from trainer.datasets import dataset_names

    p = argparse.ArgumentParser(prog="mmg-data", description="Download, inspect and import mmg-live training data.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch a public dataset from its official source")
    d.add_argument("dataset", choices=list(SOURCES))
    d.add_argument("dir", type=Path)
    d.add_argument("--parts", default="depth,inertial", help="UTD-MHAD archives: depth,inertial,skeleton")
    d.add_argument("--from-dir", type=Path, help="use archives already downloaded by hand into this folder")
    d.add_argument("--keep-archives", action="store_true")
    d.add_argument("--cafile", help="CA bundle for TLS (e.g. with a missing intermediate certificate appended)")
    d.add_argument("--timeout", type=float, default=30.0)
    d.add_argument("--url", help="override the archive URL (single-archive datasets or one --parts)")

    i = sub.add_parser("info", help="count clips per class and subject")
    i.add_argument("dataset", choices=dataset_names())
    i.add_argument("path", type=Path)
    i.add_argument("--check", action="store_true", help="also decode every clip and list the bad ones")

    m = sub.add_parser("import", help="turn dataset trials into mmg-live session folders")
    m.add_argument("dataset", choices=["utd-mhad"])
    m.add_argument("root", type=Path)
    m.add_argument("out", type=Path)
    m.add_argument("--subjects", type=_int_list)
    m.add_argument("--actions", type=_int_list)

    c = sub.add_parser("cache", help="show, shrink or empty the decoded-clip cache")
    c.add_argument("--dir", type=Path, help="cache folder (default $MMG_CACHE or ~/.cache/mmg-live)")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--prune-to", type=float, metavar="GB", help="remove least recently used entries down to GB")
    what.add_argument("--clear", action="store_true", help="remove every entry")
    return p


def _cache(args: argparse.Namespace) -> int:
    from trainer.data.cache import Cache

    cache = Cache(args.dir)
    if args.prune_to is not None and args.prune_to < 0:
        raise ValueError(f"--prune-to {args.prune_to}: must be >= 0")
    if args.clear or args.prune_to is not None:
        removed = cache.clear() if args.clear else cache.prune(int(args.prune_to * 1e9))
        print(f"removed {removed.entries} entries ({removed.bytes / 1e9:.2f} GB)")
    usage = cache.usage()
    limit = "no limit" if cache.max_bytes is None else f"limit {cache.max_bytes / 1e9:.1f} GB"
    print(f"{cache.root}: {usage.entries} entries, {usage.bytes / 1e9:.2f} GB ({limit}, $MMG_CACHE_MAX_GB)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from trainer.data.download import dataset_archives

    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    archives = dataset_archives(args.dataset, parts)
    if args.url:
        if len(archives) != 1:
            raise DownloadError("--url needs exactly one archive (use --parts with one part)")
        archives = [replace(archives[0], url=args.url)]
    files = download_dataset(
        args.dataset, args.dir, parts, archives=archives, from_dir=args.from_dir,
        keep_archives=args.keep_archives, timeout=args.timeout, cafile=args.cafile,
    )
    print(f"{args.dataset}: {len(files)} new files in {args.dir}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from trainer.datasets import get_dataset, open_dataset

    ds = open_dataset(args.dataset, args.path)
    labels = ds.labels
    names = ds.class_names
    per_class = Counter(labels)
    per_subject = Counter(get_dataset(args.dataset).clip_groups(ds))
    print(f"{args.dataset} at {args.path}: {len(ds)} clips, {len(per_class)} classes, {len(per_subject)} subjects")
    print("per class:")
    for c in sorted(per_class):
        print(f"  {c:3d} {names[c]:<34s} {per_class[c]}")
    print("per subject:")
    for s in sorted(per_subject, key=lambda x: (len(x), x)):
        print(f"  {s:<12s} {per_subject[s]}")
    if args.check:
        good = sum(1 for _ in ds)
        print(f"decoded {good} of {len(ds)}; {len(ds.skipped)} bad")
    for where, reason in ds.skipped:
        print(f"  skipped {where}: {reason}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from trainer.data.importer import import_utd_mhad

    report = import_utd_mhad(args.root, args.out, args.subjects, args.actions, progress=print)
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(f"wrote {len(report.written)} session folders to {args.out}; skipped {len(report.skipped)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmg-data`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "download":
            return _download(args)
        if args.command == "info":
            return _info(args)
        if args.command == "cache":
            return _cache(args)
        return _import(args)
    except (DataError, DownloadError, ValueError) as exc:
        print(f"mmg-data: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mmg-data: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
