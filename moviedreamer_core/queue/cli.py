"""The command line: arguments, the whole queue-and-follow run, exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import urllib.parse
import uuid

from ..argument_types import number
from ..script.limits import MAX_SCRIPT_FILE_BYTES
from ..text_files import TextFileError, read_text_file
from .client import Client, ServerUnreachable, fetch_object_info
from .messages import (check_choices, format_execution_error, format_not_sent, format_refusal,
                       unreachable_message)
from .outputs import history_error, history_interrupted, output_files, output_texts
from .progress import ProgressPrinter, _close, follow
from .websocket import WebSocket, websocket_url
from .workflow import (UsageError, apply_overrides, apply_project, check_scripts, inject_script, load_workflow,
                       unknown_inputs)


EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_FAILED = 0, 2, 3, 4, 5


def cancel(client: Client, prompt_id: str) -> None:
    """Ctrl-C: take this prompt (and only it) off the server, whether it is waiting or running (out of the queue
    first, then interrupted: a prompt that starts between the two is still stopped)."""
    for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
        try:
            client.request(path, body)
        except ServerUnreachable:
            return


class OneCtrlC:
    """While the command runs, the first Ctrl-C raises ``KeyboardInterrupt`` (the command then cancels its prompt)
    and any later one does nothing: a second Ctrl-C pressed at once cut the cancel's first request short, the
    interrupt was never sent and the prompt went on rendering on the server (an audit). Only in the main thread.

    SIGTERM (``kill PID``, ``timeout``, a process manager stopping the job) is taken the same way: it ended the command
    at once, silently, and its prompt went on rendering on the server (an audit). SIGHUP (the terminal closed, an SSH
    connection dropped) is not: nobody asked for the render to stop, and a long one would be lost to a network blip; the
    command ends and the prompt renders on (the same command run again resumes from what is finished). ``ctrl_c=False``:
    SIGINT is left alone (a command started in the background, which the shell hands SIGINT ignored)."""

    def __init__(self, ignore_after: bool = False, ctrl_c: bool = True):
        self.pressed = False
        self.ignore_after = ignore_after  # the program ends after: a Ctrl-C still on its way must not kill it
        self.signals = ([signal.SIGINT] if ctrl_c else []) + [signal.SIGTERM]
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt

    def __enter__(self) -> "OneCtrlC":
        for sig in self.signals:
            try:
                if sig != signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # ignored by whoever started the command: left so
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc) -> None:
        # after a Ctrl-C the program is ending: a late second one must not kill it
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.pressed and self.ignore_after else previous)


def cancelled_message(prompt_id: str) -> str:
    return (f"cancelled: prompt {prompt_id} was removed from the queue or interrupted; finished keyframes and shots "
            "stay in the movie project folder and a rerun resumes from them")


def _check_server(url: str) -> None:
    """``--server`` (or ``$COMFYUI_URL``) must be an http(s) URL with a host: ``http://127.0.0.1:8188``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--server {url!r}: expected an http:// or https:// URL such as http://127.0.0.1:8188 "
                         "(also what $COMFYUI_URL must hold)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m moviedreamer_core.queue",
        description="Queue an API-format MovieDreamer workflow on a running ComfyUI server, with your script, "
        "and print the files it wrote. Exit codes: 0 ok, 2 usage/script error, 3 no server, 4 prompt refused "
        "by the server (bad input) or not sent (a model file or choice the server lacks), 5 the run failed.")
    p.add_argument("workflow", help="API-format workflow JSON (e.g. workflows/api/moviedreamer_movie_api.json)")
    p.add_argument("--script", help="script file (.yaml/.yml/.json) put into every ScriptEncode node "
                   "(default: the script already in the workflow)")
    p.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"),
                   help="ComfyUI server URL (default: $COMFYUI_URL or http://127.0.0.1:8188)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
                   help="override one input, e.g. --set 9.steps=30 --set 10.backend=animatic (repeatable; JSON values)")
    p.add_argument("--project", help="movie project name: sets every project_name input (output/moviedreamer/<NAME>/)")
    p.add_argument("--input-dir", help="the server's input folder, to check the script's reference files locally too")
    p.add_argument("--output-dir", help="the server's output folder, to print absolute paths of output files")
    p.add_argument("--timeout", type=number(0.0, 1e9, above=True, unit="seconds"), default=None, help="give up after this many seconds (exit 5)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv=None, *, exiting: bool = False) -> int:
    """The command (``exiting``: run as the program, which ends right after: a Ctrl-C that came late stays ignored)."""
    args = build_parser().parse_args(argv)  # argparse exits with 2 on usage errors
    # started in the background: no Ctrl-C to take (SIGTERM still cancels the prompt; SIGHUP never does: OneCtrlC)
    with OneCtrlC(ignore_after=exiting, ctrl_c=signal.getsignal(signal.SIGINT) is not signal.SIG_IGN):
        try:
            return _run(args)
        except KeyboardInterrupt:  # before the prompt was sent (reading a script from a pipe, asking the server for
            print("stopped: nothing was queued", file=sys.stderr)  # its nodes): a traceback said nothing (a review)
            return 130


def _run(args) -> int:
    err = sys.stderr
    try:
        _check_server(args.server)
        prompt = load_workflow(args.workflow)
        if args.script is not None:
            try:
                text = read_text_file(args.script, MAX_SCRIPT_FILE_BYTES)
            except TextFileError as e:
                raise UsageError(f"the script {args.script} "
                                 f"{e.said_with({'encoding': '; a script file is YAML or JSON saved as UTF-8'})}")
            inject_script(prompt, text)
        set_inputs = apply_overrides(prompt, args.overrides)
        if args.project is not None:
            apply_project(prompt, args.project)
        if args.input_dir is not None and not os.path.isdir(args.input_dir):
            raise UsageError(f"--input-dir {args.input_dir}: not a folder")
        notes: list = []
        scripts = check_scripts(prompt, args.input_dir, notes)
        for note in notes:
            print(f"note: {note}", file=err)
    except UsageError as e:
        print(f"error: {e}", file=err)
        return EXIT_USAGE

    client = Client(args.server)
    try:
        object_info = fetch_object_info(client, prompt)
    except ServerUnreachable as e:
        print(f"error: {unreachable_message(client.url, e)}", file=err)
        return EXIT_UNREACHABLE
    missing_types = sorted({n["class_type"] for n in prompt.values() if n["class_type"] not in object_info})
    if missing_types:
        print(f"error: the server has no node type {', '.join(missing_types)}: install the custom node pack that "
              "provides it (the test nodes need MOVIEDREAMER_TEST_NODES=1 when ComfyUI starts)", file=err)
        return EXIT_REFUSED
    unknown = unknown_inputs(set_inputs, prompt, object_info)
    if unknown:
        print(f"error: {unknown}", file=err)
        return EXIT_USAGE
    refused = check_choices(prompt, object_info)
    if refused:  # found here, not by the server: said so, and nothing is sent (format_not_sent says why)
        print(f"error: {format_not_sent(refused, prompt, input_dir_hint=scripts > 0 and args.input_dir is None)}", file=err)
        return EXIT_REFUSED
    client_id = uuid.uuid4().hex
    ws = None
    try:
        ws = WebSocket(websocket_url(client.url, client_id), timeout=10.0)
    except (OSError, ConnectionError, ValueError):
        ws = None  # no websocket: progress comes from polling /history
    # the prompt's id is chosen here and sent with it (the host takes "prompt_id"), so a Ctrl-C while the server is
    # still answering the POST can take off a prompt it has queued already
    prompt_id = str(uuid.uuid4())
    try:
        status, body = client.request("/prompt", {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id})
    except ServerUnreachable as e:
        print(f"error: {unreachable_message(client.url, e)}", file=err)
        _close(ws)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        cancel(client, prompt_id)
        _close(ws)
        print(cancelled_message(prompt_id), file=err)
        return EXIT_FAILED
    if status == 400:
        print(f"error: {format_refusal(body, prompt)}", file=err)
        _close(ws)
        return EXIT_REFUSED
    if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        print(f"error: unexpected answer from {client.url}/prompt (HTTP {status}): {str(body)[:500]}", file=err)
        _close(ws)
        return EXIT_UNREACHABLE if status == 404 else EXIT_FAILED
    prompt_id = body["prompt_id"]
    if isinstance(body.get("node_errors"), dict) and body["node_errors"]:
        # the host queues a prompt when at least one output validates and drops the others; its 200 answer lists why:
        # said (even with --quiet), or part of the workflow silently did not run (a review)
        print("warning: " + format_refusal({"node_errors": body["node_errors"]}, prompt,
                                           refused="the server queued the prompt but will not run the outputs these "
                                                   "inputs feed"), file=err)
    printer = ProgressPrinter(prompt, err)
    if not args.quiet:
        printer.line(f"queued prompt {prompt_id} on {client.url} ({len(prompt)} nodes"
                     + ("" if ws else "; no websocket, polling /history") + ")")
    errors: list[dict] = []

    def on_message(event: str, data: dict) -> None:
        if event == "execution_error":
            errors.append(data)
        if not args.quiet:
            printer.handle(event, data)

    try:
        entry = follow(client, ws, prompt_id, on_message, args.timeout)
    except TimeoutError:
        print(f"error: prompt {prompt_id} did not finish within {args.timeout:g} s (it is still queued or running "
              "on the server)", file=err)
        return EXIT_FAILED
    except ServerUnreachable as e:
        print(f"error: lost the server while waiting for prompt {prompt_id}: {e}\nThe server stopped answering (it was "
              "stopped, killed or crashed, or it is too busy or too far to answer: its console says which). If it is "
              "still running, so may the prompt be: look at its queue before queueing again. Otherwise start it again "
              "and queue the same command: finished keyframes and shots stay in the movie project folder and the rerun "
              "resumes from them", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        cancel(client, prompt_id)
        print(cancelled_message(prompt_id), file=err)
        return EXIT_FAILED
    finally:
        _close(ws)

    failure = history_error(entry) or (errors[0] if errors else None)
    status_str = (entry.get("status") or {}).get("status_str")
    for line in output_texts(entry, prompt):
        print(line)
    for path in output_files(entry, args.output_dir):
        print(path)
    if failure is not None:
        print(f"error: {format_execution_error(failure, prompt)}", file=err)
        return EXIT_FAILED
    if status_str != "success" or history_interrupted(entry):
        print(f"error: prompt {prompt_id} did not complete (" + ("interrupted" if history_interrupted(entry) else
              f"status {status_str}") + ")", file=err)
        return EXIT_FAILED
    if not args.quiet:
        printer.line(f"done: prompt {prompt_id}")
    return EXIT_OK
