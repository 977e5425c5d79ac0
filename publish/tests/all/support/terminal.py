"""Runs a command on a pseudo-terminal and answers its prompts as a person at
a keyboard would.

    terminal.py STEPS_JSON COMMAND [ARG...]

STEPS_JSON is a list of {"prompt": TEXT, "type": TEXT, "hidden": BOOL}: wait
until TEXT appears on the terminal, then type the answer and Enter. For a
hidden answer it first waits until the program has switched the terminal's
echo off, so a password typed too early cannot be echoed by the race.

Prints one JSON object: {"status": exit code, "transcript": everything the
terminal showed} or, when a step timed out, {"error": ..., "transcript": ...}.
"""

import json
import os
import pty
import select
import signal
import sys
import termios
import time

TIMEOUT_SECONDS = 30


def main():
    steps = json.loads(sys.argv[1])
    command = sys.argv[2:]
    pid, master = pty.fork()
    if pid == 0:
        os.execv(command[0], command)

    transcript = bytearray()
    deadline = time.monotonic() + TIMEOUT_SECONDS

    def read_more(wait):
        """Reads what the terminal shows; False once the program closed it."""
        ready, _, _ = select.select([master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the slave side is closed
            return False
        transcript.extend(chunk)
        return bool(chunk)

    def give_up(problem):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print(json.dumps({"error": problem, "transcript": transcript.decode(errors="replace")}))
        sys.exit(0)

    start = 0
    for step in steps:
        prompt = step["prompt"].encode()
        while prompt not in transcript[start:]:
            if time.monotonic() > deadline or not read_more(0.1):
                give_up(f"the prompt {step['prompt']!r} never came")
        if step.get("hidden"):
            while termios.tcgetattr(master)[3] & termios.ECHO:
                if time.monotonic() > deadline:
                    give_up(f"echo stayed on at {step['prompt']!r}")
                read_more(0.02)
        start = len(transcript)
        os.write(master, step["type"].encode() + b"\r")

    while read_more(0.1):
        if time.monotonic() > deadline:
            give_up("the program did not finish")
    _, status = os.waitpid(pid, 0)
    print(
        json.dumps(
            {
                "status": os.waitstatus_to_exitcode(status),
                "transcript": transcript.decode(errors="replace"),
            }
        )
    )


main()
