"""Command line: ``python -m moviedreamer_core.script schema`` prints the JSON Schema;
``python -m moviedreamer_core.script validate FILE [--input-dir DIR]`` checks a script and prints its hash.

A problem in the file is a report on stderr and exit status 1, never a traceback: a file over the size limit
is refused by its size before it is read, and a file that is not UTF-8 text is refused as such."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..closed_stdout import exit_status
from . import ScriptError, json_schema, load_script, script_hash
from .check import off_screen_names
from .parsing import read_script_file


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
    if args.input_dir is not None and not os.path.isdir(args.input_dir):
        # else every reference would be reported "not found in the input folder", hiding the one mistake
        check.error(f"--input-dir: {args.input_dir} is not a folder")
    input_dir = args.input_dir or os.path.dirname(os.path.abspath(args.file))
    try:
        text = read_script_file(args.file, args.file, where="file")
        script = load_script(text, input_dir=input_dir)
    except ScriptError as e:
        print(e, file=sys.stderr)
        if any(".references[" in issue.path and "input folder" in issue.message for issue in e.issues):
            # "not found in the input folder" did not say which folder: without --input-dir it is the script's own,
            # not ComfyUI's input/ (found running the README's example script through the README's command)
            print(f"reference files were looked up in {input_dir}" + ("" if args.input_dir else
                  " (the script's own folder; --input-dir names ComfyUI's input/ folder)"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # e.g. while it waits for a named pipe's writer (text_files.PIPE_WRITER_WAIT_S)
        print("stopped", file=sys.stderr)
        return 130
    print(f"ok: {len(script.shots)} shots, {script.n_keyframes} keyframes, {len(script.characters)} characters")
    print(f"hash: {script_hash(script)}")
    for note in off_screen_names(script):  # the notes the queue command and ScriptEncode give (not problems)
        print(f"note: {note['path']}: {note['message']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
