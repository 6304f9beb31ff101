"""``text_files.read_text_file``: every small text file a user writes (scripts, captions, character descriptions,
workflows given to the queue command) is read bounded, as UTF-8 with a byte-order mark allowed, with one error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from moviedreamer_core.text_files import TextFileError, read_text_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_text_with_or_without_a_byte_order_mark(tmp_path):
    (tmp_path / "a.txt").write_text("Ava at the window\n", encoding="utf-8-sig")
    (tmp_path / "b.txt").write_text("\ufeffkept: a mark that is not the first character is text", encoding="utf-8")
    assert read_text_file(str(tmp_path / "a.txt"), 100) == "Ava at the window\n"
    assert read_text_file(str(tmp_path / "b.txt"), 100).startswith("kept")  # only one leading mark is dropped
    (tmp_path / "c.txt").write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfx")
    assert read_text_file(str(tmp_path / "c.txt"), 100) == "\ufeffx"


@pytest.mark.parametrize("data, kind, message", [
    (b"x" * 11, "size", "is 11 bytes, more than the limit of 10 bytes"),
    ("Caf\xe9".encode("latin-1"), "encoding", "is not UTF-8 text (byte 0xe9 at offset 3)"),
    (b"\xef\xbb\xbfCaf\xe9", "encoding", "is not UTF-8 text (byte 0xe9 at offset 6)"),  # offsets in the file
])
def test_refusals_say_why(tmp_path, data, kind, message):
    (tmp_path / "f").write_bytes(data)
    with pytest.raises(TextFileError) as refused:
        read_text_file(str(tmp_path / "f"), 10)
    assert refused.value.kind == kind and str(refused.value) == message and isinstance(refused.value, ValueError)


def test_a_missing_file_or_a_folder_cannot_be_read(tmp_path):
    for path, name in ((tmp_path / "none.txt", "FileNotFoundError"), (tmp_path, "IsADirectoryError")):
        with pytest.raises(TextFileError, match=f"^cannot be read \\({name}: ") as refused:
            read_text_file(str(path), 10)
        assert refused.value.kind == "unreadable"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_read_no_further_than_the_limit():
    """``/dev/zero`` reports size 0 and never ends: read to the limit and refused, not read until memory runs out."""
    with pytest.raises(TextFileError, match="^is larger than the limit of 1,000 bytes$") as refused:
        read_text_file("/dev/zero", 1000)
    assert refused.value.kind == "size" and refused.value.size is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_is_read_bounded(tmp_path):
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)

    def write(data: bytes):
        with open(fifo, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:  # the reader stopped at its limit
                pass

    for data, expected in ((b"title: from a pipe\n", "title: from a pipe\n"), (b"y" * 100_000, None)):
        writer = threading.Thread(target=write, args=(data,))
        writer.start()
        if expected is None:
            with pytest.raises(TextFileError, match="larger than the limit"):
                read_text_file(fifo, 1000)
        else:
            assert read_text_file(fifo, 1000) == expected
        writer.join(10)
        assert not writer.is_alive()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_nobody_writes_to_is_refused_after_a_bounded_wait_and_a_late_writer_is_read(tmp_path):
    """``mkfifo s.yaml; python -m moviedreamer_core.script validate s.yaml`` waited for ever in the open (an audit).
    A pipe is opened without waiting; one no program writes to is refused after ``PIPE_WRITER_WAIT_S``, and a writer
    that opens it a moment after the reader is still read."""
    import time

    from moviedreamer_core.text_files import PIPE_WRITER_WAIT_S

    fifo = str(tmp_path / "s.yaml")
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(TextFileError, match=f"is a named pipe that nothing wrote to within {PIPE_WRITER_WAIT_S} s"):
        read_text_file(fifo, 1000)
    assert time.monotonic() - started < PIPE_WRITER_WAIT_S + 5

    def late(delay):
        time.sleep(delay)
        with open(fifo, "wb") as f:
            f.write(b"title: late\n")

    writer = threading.Thread(target=late, args=(1.0,))
    writer.start()
    assert read_text_file(fifo, 1000) == "title: late\n"
    writer.join(10)
    done = subprocess.run([sys.executable, "-I", "-m", "moviedreamer_core.script", "validate", fifo], cwd=REPO,
                          capture_output=True, text=True, timeout=PIPE_WRITER_WAIT_S + 60)
    assert done.returncode != 0 and "is a named pipe that nothing wrote to" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("command, said", [
    (["moviedreamer_core.script", "validate"], "stopped"),
    (["moviedreamer_core.queue", os.path.join("workflows", "api", "moviedreamer_toycinema_api.json"), "--server",
      "http://127.0.0.1:9", "--script"], "stopped: nothing was queued"),
])
def test_ctrl_c_while_a_command_waits_for_a_pipes_writer_stops_it_in_words(tmp_path, command, said):
    """A Ctrl-C during the wait for a named pipe's writer (or while the queue command asks the server for its nodes)
    ended in a traceback (a review)."""
    import signal
    import time

    fifo = str(tmp_path / "s.yaml")
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-I", "-m", *command, fifo], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(3.0)  # imported and waiting (PIPE_WRITER_WAIT_S is 5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and said in err and "Traceback" not in err, (proc.returncode, err[-2000:])


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="no bash here")
def test_a_script_given_through_process_substitution_is_read_whole_however_slow_its_writer(tmp_path):
    """``validate <(cmd)``: the pipe's writer is there from the start, so the read waits for it (here 2 s before the
    first byte, longer than a writer-less pipe is waited for would not matter)."""
    script = tmp_path / "s.yaml"
    script.write_text("title: T\nstyle: s\ncharacters: []\nshots:\n  - id: s1\n    scene: a beach\n"
                      "    action: The sea.\n    duration: 2\n", encoding="utf-8")
    done = subprocess.run(["/bin/bash", "-c", f'"{sys.executable}" -I -m moviedreamer_core.script validate '
                                              f'<(sleep 2; cat "{script}")'], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_captions_saved_with_a_byte_order_mark_are_read(tmp_path):
    """``json.loads`` refuses a leading byte-order mark ("Unexpected UTF-8 BOM"): a captions file saved by Notepad
    used to be refused by the dataset builder."""
    from moviedreamer_core.data.captions import load_sidecar

    (tmp_path / "film.json").write_text(json.dumps({"style": "noir", "shots": [{"action": "Ava sits"}]}),
                                        encoding="utf-8-sig")
    sidecar = load_sidecar(str(tmp_path / "film.mp4"))
    assert sidecar.style == "noir" and sidecar.shots == [{"action": "Ava sits", "scene": ""}]
    (tmp_path / "film.json").unlink()
    (tmp_path / "film.srt").write_bytes(b"\xef\xbb\xbf1\n00:00:00,000 --> 00:00:01,000\nCaf\xe9 au lait\n")  # Latin-1 text
    assert load_sidecar(str(tmp_path / "film.mp4")).subtitles == [(0.0, 1.0, "Caf\ufffd au lait")]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_the_queue_command_refuses_a_device_given_as_the_workflow_or_the_script(tmp_path):
    """``python -m moviedreamer_core.queue /dev/zero`` (or ``--script /dev/zero``) read until memory ran out; now
    both stop at their limit with exit 2 before any connection."""
    workflow = os.path.join(REPO, "workflows", "api", "moviedreamer_toycinema_api.json")
    for args, message in ((["/dev/zero"], "the workflow /dev/zero is larger than the limit of 67,108,864 bytes"),
                          ([workflow, "--script", "/dev/zero"], "the script /dev/zero is larger than the limit of")):
        done = subprocess.run([sys.executable, "-m", "moviedreamer_core.queue", *args, "--server", "http://127.0.0.1:9"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_utf16_text_is_named_as_such(tmp_path):
    """Windows PowerShell 5 writes UTF-16 with ``>``: said so, with the fix, instead of "byte 0xff at offset 0"."""
    from moviedreamer_core.script import ScriptError
    from moviedreamer_core.script.parsing import read_script_file

    for encoding in ("utf-16", "utf-16-be"):
        path = tmp_path / f"{encoding}.yaml"
        path.write_bytes("\ufefftitle: T\n".encode(encoding))
        with pytest.raises(TextFileError) as refused:
            read_text_file(str(path), 100)
        assert refused.value.found == "UTF-16" and refused.value.kind == "encoding"
        assert str(refused.value).startswith("is UTF-16 text, not UTF-8 (Windows PowerShell 5")
        with pytest.raises(ScriptError, match=f'"{encoding}.yaml" is UTF-16 text, not UTF-8 .*save it as UTF-8'):
            read_script_file(str(path), f"{encoding}.yaml")


def test_a_tab_that_breaks_the_yaml_is_named():
    from moviedreamer_core.script import ScriptError, load_script

    with pytest.raises(ScriptError, match=r"line 3, column 1: .*\(a tab: YAML is indented with spaces, not tabs\)"):
        load_script("title: T\nshots:\n\t- id: s1\n")
