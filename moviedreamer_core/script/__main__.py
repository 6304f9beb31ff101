"""Command line: ``python -m moviedreamer_core.script schema`` prints the JSON Schema;
``python -m moviedreamer_core.script validate FILE [--input-dir DIR]`` checks a script and prints its hash."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import ScriptError, json_schema, load_script, script_hash


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moviedreamer_core.script")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON Schema of the script format")
    check = sub.add_parser("validate", help="validate a script file and print its content hash")
    check.add_argument("file")
    check.add_argument("--input-dir", default=None, help="folder that reference file names are resolved in "
                       "(default: the script's own folder)")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    input_dir = args.input_dir or os.path.dirname(os.path.abspath(args.file))
    try:
        script = load_script(text, input_dir=input_dir)
    except ScriptError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"ok: {len(script.shots)} shots, {script.n_keyframes} keyframes, {len(script.characters)} characters")
    print(f"hash: {script_hash(script)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
