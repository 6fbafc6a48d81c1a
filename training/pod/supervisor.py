"""The pod's run once scripts/setup_pod.sh has the clone and its Python: preflight, training (torchrun
on several GPUs or the nodes of an Instant Cluster), the run's outcome, and the pod's end (AUTO_STOP=1 stops it, else it stays up).

    CONFIG_PATH=configs/experiments/x.py AUTO_STOP=1 python -m training.pod run

setup_pod.sh execs this in the clone, so it is the container's main process: RunPod's SIGTERM lands
here and is forwarded to the trainer (torchrun passes it to its ranks), which saves a checkpoint and
exits 143. The exit code is the run's own (training.errors); under torchrun, which exits 1 whatever
its ranks returned, it is read from run_status.json.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

from training.errors import EXIT_PREEMPTED, EXIT_USER_ERROR, UserError, meaning
from training.outcome_line import line, outcome_for
from training.timestamps import utc_now

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
LOG_FILE_ENV = "POD_LOG_FILE"  # set by setup_pod.sh: the log on the volume, for the messages here
LOG_PID_ENV = "POD_LOG_PID"  # set by setup_pod.sh: its log writer, which must drain before the pod ends
LOG_DRAIN_S = 10.0


# Set for the training the supervisor starts right after its own `--preflight-only` child passed:
# train.py then does not check everything a second time in the same pod start.
PREFLIGHT_PASSED_ENV = "HARNESS_PREFLIGHT_PASSED"


def say(message: str) -> None:
    # os.write, not print: this also runs in the signal handler, where print could re-enter its buffer.
    os.write(sys.stdout.fileno(), f"[setup_pod {time.strftime('%H:%M:%S', time.gmtime())}] {message}\n".encode())


def launcher(environ: Mapping[str, str], python: str = sys.executable) -> list[str]:
    """How to start the trainer: one process, or torchrun with a rank per GPU on a pod with several,
    or across the nodes of an Instant Cluster (training.pod.cluster; UserError for a bad variable)."""
    from training.pod.cluster import launcher as torchrun_arguments

    arguments = torchrun_arguments(environ)
    return [python, "-m", "torch.distributed.run", *arguments] if arguments else [python]


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Signalled(Exception):
    """A stop signal arrived while no child was running."""


class Supervisor:
    def __init__(self, environ: Mapping[str, str] = os.environ, python: str = sys.executable):
        self.environ, self.python = environ, python
        self.config_path = environ.get("CONFIG_PATH", "").strip()
        self.pod_id = environ.get("RUNPOD_POD_ID", "").strip()
        self.phase = "setup"  # what an exit ends: setup, preflight or training
        self.child: subprocess.Popen | None = None
        self.starting = False  # a child is being started
        self.stop_signal: str | None = None
        self.recorded: dict | None = None  # run_status.json as the training run left it

    # --- signals ---------------------------------------------------------------------------------
    def on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.stop_signal = name
        if self.starting:  # run_child forwards it once the child exists
            say(f"got {name}: forwarding SIGTERM to the trainer being started so it saves a checkpoint and stops")
        elif self.child is not None and self.child.poll() is None:
            say(f"got {name}: forwarding SIGTERM to pid {self.child.pid} so the trainer saves a checkpoint and stops")
            self.child.send_signal(signal.SIGTERM)
        else:
            raise Signalled(name)

    def run_child(self, command: list[str], env: Mapping[str, str] | None = None) -> int:
        """Run `command` in its own session (a Ctrl-C reaches it once, forwarded from here); its exit code."""
        # A signal while it starts is only recorded (raising could orphan it), then forwarded to it.
        # (Not sigmask: a blocked mask is inherited through exec, and the trainer would never see SIGTERM.)
        self.starting = True
        try:
            self.child = subprocess.Popen(command, start_new_session=True, env=env)
        finally:
            self.starting = False
        if self.stop_signal:
            self.child.send_signal(signal.SIGTERM)
        try:
            # A forwarded signal interrupts nothing here: wait() resumes until the trainer has saved and exited.
            return exit_code(self.child.wait())
        finally:
            self.child = None

    # --- the run ---------------------------------------------------------------------------------
    def train(self) -> int:
        """Preflight, then training; the exit code of whichever ended the run."""
        try:
            start = launcher(self.environ, self.python)
        except UserError as error:  # before preflight: a node that cannot join its cluster trains nothing
            for problem in error.problems:
                say(f"error: {problem}")
            return EXIT_USER_ERROR
        if self.environ.get("SMOKE") == "1":
            return self.smoke()
        self.phase = "preflight"
        preflight = [self.python, "training/train.py", "--config", self.config_path, "--preflight-only"]
        say(f"preflight: python {' '.join(preflight[1:])}")
        rc = self.run_child(preflight)
        if rc != 0:
            return rc
        if self.stop_signal:  # stopped while the checks ran: no training starts
            return EXIT_PREEMPTED
        self.phase = "training"
        command = [*start, "training/train.py", "--config", self.config_path, "--resume", "auto"]
        gpus = self.environ.get("NUM_TRAINERS") or self.environ.get("RUNPOD_GPU_COUNT") or 1
        nodes = self.environ.get("NUM_NODES") or "1"
        where = "" if nodes == "1" else f" on node {self.environ.get('NODE_RANK', '?')} of {nodes}"
        say(f"training: {' '.join(command[1:])} ({gpus} GPU(s){where})")
        started = utc_now()
        rc = self.run_child(command, env={**os.environ, PREFLIGHT_PASSED_ENV: "1"})  # the checks just passed: not twice
        self.recorded = self.recorded_since(started)
        code = (self.recorded or {}).get("exit_code")
        if rc != 0 and len(start) > 1 and isinstance(code, int):  # torchrun: the ranks' own outcome
            rc = code
        return rc

    def smoke(self) -> int:
        """SMOKE=1 (launch --smoke): every path of a run, small (training.pod.smoke), instead of training."""
        self.phase = "smoke run"
        out = os.path.join(self.environ.get("VOLUME_PATH") or ".", "smoke", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        say(f"smoke run: python -m training.pod.smoke --config {self.config_path} --output {out}")
        return self.run_child([self.python, "-m", "training.pod.smoke", "--config", self.config_path, "--output", out])

    def recorded_since(self, since: str) -> dict | None:
        """run_status.json as this training run wrote it (its exit code under torchrun, its step, early
        stopping), or None."""
        from configs.loader import load_config
        from training.run_config import resolve
        from training.run_status import recorded_since

        try:
            return recorded_since(resolve(load_config(self.config_path)).output_dir, since)
        except Exception as error:  # the config passed preflight; whatever else fails, the exit code stands
            say(f"could not read run_status.json ({type(error).__name__}: {error}); the exit code stands")
            return None

    def outcome_line(self, rc: int) -> str:
        """The machine-readable last word of the run (training.outcome_line), which the fleet reads."""
        recorded = self.recorded or {}
        step = recorded.get("step") if isinstance(recorded.get("step"), int) else None
        outcome = outcome_for(rc, signalled=bool(self.stop_signal), status=recorded.get("status"))
        return line(outcome, rc, step, self.phase)

    def end(self, rc: int) -> int:
        """Say how the run ended and stop the pod (AUTO_STOP=1) or keep it up; a preempted pod is left alone."""
        if self.stop_signal or rc == EXIT_PREEMPTED:
            say(f"stopped during {self.phase} (exit {rc}): a restart of this script carries on from the last checkpoint")
            say(self.outcome_line(rc))
            return rc
        say(f"{self.phase} ended with exit code {rc}: {meaning(rc)}")
        say(self.outcome_line(rc))
        if self.environ.get("AUTO_STOP") == "1":
            if not self.pod_id:
                say("AUTO_STOP=1 but RUNPOD_POD_ID is not set: not on a RunPod pod, nothing to stop")
                return rc
            from training.pod.commands import stop_this_pod

            say(f"AUTO_STOP=1: stopping pod {self.pod_id} (runpodctl pod stop, else RunPod's REST API)")
            if stop_this_pod(self.environ) != 0:
                self.park("AUTO_STOP=1 but the pod could not be stopped")
        elif self.pod_id:
            # RunPod restarts a container whose command exits: that would train again, and bill again.
            self.park("AUTO_STOP is not set")
        return rc

    def park(self, why: str) -> None:
        """Keep the container alive until a signal (you stopping the pod) instead of exiting."""
        log = self.environ.get(LOG_FILE_ENV) or "the pod's log"
        say(f"{why}: this pod stays up, and billed, until you stop it in the RunPod console (logs: {log})")
        while True:
            signal.pause()

    def main(self) -> int:
        for signum in FORWARDED:
            signal.signal(signum, self.on_signal)
        if not self.config_path:
            say("error: CONFIG_PATH not set: the config on the experiment branch, e.g. configs/experiments/quick_val.py")
            rc = EXIT_USER_ERROR
        else:
            try:
                rc = self.train()
            except Signalled as stopped:
                say(f"got {stopped} during {self.phase}: stopping")
                rc = EXIT_PREEMPTED
        try:
            return self.end(rc)
        except Signalled:  # the pod being stopped (we may have asked for it), or you, while parked
            return rc
        finally:
            for signum in FORWARDED:  # nothing left to forward to: a signal now must not cut the drain short
                signal.signal(signum, signal.SIG_IGN)
            drain_log(self.environ)


def drain_log(environ: Mapping[str, str]) -> None:
    """Let setup_pod.sh's log writer (secret masking, then the log and the terminal) finish: as the
    container's main process ends, everything else in it is killed, last lines included."""
    pid = environ.get(LOG_PID_ENV, "")
    if not pid.isdigit():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # our ends of the pipe closed: the writer sees the end of its input
    os.dup2(devnull, 2)
    deadline = time.monotonic() + LOG_DRAIN_S
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(int(pid), os.WNOHANG)
        except ChildProcessError:  # not ours (run by hand): nothing to wait for
            return
        if done:
            return
        time.sleep(0.05)
