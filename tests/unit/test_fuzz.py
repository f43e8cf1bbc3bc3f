"""The coverage-guided fuzz targets in fuzz/, each run for a bounded time.

Each target runs as its own process (atheris/libFuzzer) on a copy of its
committed seed corpus, so the corpus in the repository is never touched; a
finding (an assertion, an uncaught exception, a hang, a memory blow-up) makes
the fuzzer exit non-zero and the test fail with the fuzzer's report: the
Python exception, and the tail of its output, which holds the offending input
(repr and base64).

The scanner target runs against a coverage-instrumented build of flows/native
(``fuzz/build_native.sh``), without which libFuzzer would see none of the
compiled scanner's branches. The build starts with this module and overlaps
the decoder run: under a second when warm, about 8 s in a fresh clone (only
the crate is rebuilt: the target dir, ~/.cache/iotpipe/fuzz-native, is kept
out of the work tree), about 30 s of CPU the first time on a machine.

``IOTPIPE_FUZZ_SECONDS`` sets the fuzzing time per target (15 s by default,
so that the whole module stays well under a minute).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
SECONDS = int(os.environ.get("IOTPIPE_FUZZ_SECONDS", "15"))
TAIL = 3000
BUILD_TIMEOUT_S = 200


@dataclass
class Build:
    proc: subprocess.Popen[str]
    log: Path

    def library(self) -> str:
        """Wait for the build; the instrumented library's path."""
        out, _ = self.proc.communicate(timeout=BUILD_TIMEOUT_S)
        log = self.log.read_text(errors="replace")
        assert self.proc.returncode == 0, (
            f"fuzz/build_native.sh exited {self.proc.returncode}:\n{log[-TAIL:]}"
        )
        lines = out.strip().splitlines()
        assert lines and Path(lines[-1]).is_file(), f"fuzz/build_native.sh printed {out!r}"
        return lines[-1]


@pytest.fixture(scope="module")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    """The instrumented flows/native build, started in the background."""
    log = tmp_path_factory.mktemp("native-build") / "build.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            ["bash", str(FUZZ / "build_native.sh")],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYO3_PYTHON": sys.executable},
            start_new_session=True,  # so that cargo goes too if the build is cut short
        )
    yield Build(proc, log)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def report(output: str) -> str:
    """The fuzzer's Python exception (if any), then its output's tail."""
    start = output.find("=== Uncaught Python exception: ===")
    head = output[start : start + TAIL] + "\n...\n" if start >= 0 else ""
    return head + output[-TAIL:]


@pytest.mark.parametrize("target", ["decoder", "scanner"])
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path, native_build: Build) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus" / target, corpus)
    assert any(corpus.iterdir()), f"no seeds in fuzz/corpus/{target}"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    env = dict(os.environ)
    if target == "scanner":
        env["IOTPIPE_FUZZ_NATIVE"] = native_build.library()
    cmd = [
        sys.executable,
        str(FUZZ / f"{target}.py"),
        f"-max_total_time={SECONDS}",
        "-rss_limit_mb=2048",
        "-timeout=10",
        "-max_len=4096",
        "-print_final_stats=1",
        f"-dict={FUZZ / f'{target}.dict'}",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SECONDS + 60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr or b""
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(f"fuzz/{target}.py ran past {SECONDS + 60} s:\n{report(text)}")
    output = proc.stdout + proc.stderr
    found = sorted(p.name for p in artifacts.iterdir())
    assert proc.returncode == 0, (
        f"fuzz/{target}.py exited {proc.returncode} (artifacts {found}):\n{report(output)}"
    )
    assert "Done " in output and not found, f"fuzz/{target}.py did not finish:\n{report(output)}"
    if target == "scanner":
        assert "inline 8-bit counters" in output, "the instrumented flows/native was not loaded"
