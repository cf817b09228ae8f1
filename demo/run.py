"""``make run``: migrate, create demo credentials, then keep a real Celery worker and the web server running.

A child that dies is started again, with a line in the terminal saying which one, how it
ended and when it comes back; the web server never stops because the worker crashed.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PYTHON = sys.executable
# A child that ran at least this long before dying is restarted at once; one that keeps dying
# sooner waits twice as long each time, up to MAX_RESTART_DELAY_S.
STABLE_AFTER_S = 30.0
MAX_RESTART_DELAY_S = 30.0


def port() -> int:
    return int(os.environ.get("PORT", "8000"))


def var_dir() -> Path:
    path = Path(os.environ.get("MODERATION_VAR_DIR", ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def manage(*args: str) -> str:
    """Run a management command quietly; its output is shown only if it fails."""
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, text=True, capture_output=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo.run: manage.py {args[0]} failed (exit status {result.returncode})")
    return result.stdout


def demo_credentials(var: Path) -> tuple[str, str]:
    """The admin password and a client API key, created once and kept in var/ (mode 600)."""
    path = var / "demo-credentials.txt"
    if path.exists():
        password, key = path.read_text().split("\n")[:2]
        return password, key
    password = secrets.token_urlsafe(12)
    manage("shell", "--no-imports", "-c",
           "from django.contrib.auth import get_user_model as g; U = g(); "
           "u = U.objects.filter(username='admin').first() or U.objects.create_superuser('admin', ''); "
           f"u.set_password('{password}'); u.save()")
    key = manage("moderation_apikey", "demo-client", "--name", "make run").strip().splitlines()[-1]
    path.write_text(f"{password}\n{key}\n")
    path.chmod(0o600)
    return password, key


def sample_image(var: Path) -> Path:
    """A small JPEG for the banner's example command (generated, so nothing binary is shipped)."""
    from PIL import Image, ImageDraw

    path = var / "sample.jpg"
    if not path.exists():
        image = Image.new("RGB", (320, 240), (70, 130, 180))
        draw = ImageDraw.Draw(image)
        draw.ellipse((110, 60, 210, 160), fill=(250, 210, 60))
        draw.text((20, 200), "django-vlm-moderation sample", fill=(255, 255, 255))
        image.save(path, format="JPEG", quality=85)
    return path


def models_notice(var: Path) -> str:
    """Resolve the models up front, so a fallback to random weights is shown at start, loudly."""
    from transformers.utils import logging as transformers_logging

    from vlm_engine.loading import config_roles_real, engine_config_resolve, roles_notice

    # Downloads keep their progress bars; writing the tiny checkpoints needs none.
    transformers_logging.disable_progress_bar()
    profile = os.environ.get("MODERATION_PROFILE", "small")
    tiny_dir = os.environ.get("MODERATION_TINY_DIR", str(var / "tiny-models"))
    config, notice = engine_config_resolve(profile, tiny_dir=tiny_dir,
                                           device=os.environ.get("MODERATION_DEVICE", "cpu"))
    roles = roles_notice(config_roles_real(config))
    if notice:
        return f"\n{'!' * 78}\n {notice}\n {roles}\n{'!' * 78}"
    return f"\n Models: {config.profile} profile ({config.clip})\n {roles}"


@dataclass
class Child:
    """One supervised process: how to start it, and its restart bookkeeping."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = 1.0
    restart_at: float | None = None

    def start(self) -> None:
        # Its own process group, so whatever it forked (the worker's beat) goes with it.
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env={**os.environ, **self.env}, process_group=0)
        self.started_at, self.restart_at = time.monotonic(), None
        say(f"{self.name} started (pid {self.proc.pid})")

    def check(self) -> None:
        """Notice an exit and schedule a restart; start again once the delay has passed."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            return
        _group_kill(self.proc.pid)
        ran = now - self.started_at
        self.delay = 1.0 if ran >= STABLE_AFTER_S else min(self.delay * 2, MAX_RESTART_DELAY_S)
        self.restart_at = now + self.delay
        others = "the web server keeps running" if self.name == "worker" else "the worker keeps running"
        say(f"the {self.name} (pid {self.proc.pid}) {exit_description(code)} after {ran:.0f}s; "
            f"restarting it in {self.delay:.0f}s ({others}; its output above says why it stopped)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            say(f"the {self.name} did not stop within 30s; killing it")
        _group_kill(self.proc.pid)


def _group_kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def exit_description(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def say(message: str) -> None:
    print(f"demo.run: {message}", flush=True)


def children(var: Path) -> list[Child]:
    worker = [PYTHON, "-m", "celery", "-A", "workers", "worker", "-Q", "gpu,default", "-P", "solo",
              "-c", "1", "-n", "demo-gpu0@%h", "-B", "-s", str(var / "celerybeat-schedule"),
              "--without-gossip", "--without-mingle", "-l", "info"]
    web = [PYTHON, "manage.py", "runserver", f"{HOST}:{port()}", "--noreload"]
    # The parent has already fetched or written the checkpoints: loading them needs no progress bars.
    return [Child("worker", worker, env={"HF_HUB_DISABLE_PROGRESS_BARS": "1"}), Child("web server", web)]


def web_wait(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port()}/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def banner(password: str, key: str, notice: str, image: Path) -> None:
    base = f"http://{HOST}:{port()}"
    try:
        shown = image.relative_to(ROOT)  # make run runs in the repository root
    except ValueError:
        shown = image
    print(f"""
==============================================================================
 django-vlm-moderation is running
   API docs    {base}/api/v1/docs/
   Admin       {base}/admin/   (user: admin, password: {password})
   Health      {base}/healthz  {base}/readyz
   API key     {key}
 Try (from the repository root):
   curl -H "Authorization: Api-Key {key}" -F image=@{shown} -F text="hello" {base}/api/v1/posts/
 Credentials are kept in {var_dir() / 'demo-credentials.txt'}.
 Ctrl-C stops the web server and the worker.
=============================================================================={notice}
""", flush=True)


def supervise(procs: list[Child]) -> None:
    while True:
        for child in procs:
            child.check()
        time.sleep(0.5)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings.dev")
    signal.signal(signal.SIGTERM, _terminate)
    var = var_dir()
    say("preparing the database (var/)…")
    manage("migrate", "--noinput")
    manage("moderation_setup_groups")
    password, key = demo_credentials(var)
    image = sample_image(var)
    notice = models_notice(var)
    procs = children(var)
    try:
        for child in procs:
            child.start()
        if not web_wait(timeout=60):
            say(f"the web server does not answer on port {port()} yet; its output above says why")
        banner(password, key, notice, image)
        supervise(procs)
    except KeyboardInterrupt:
        pass
    finally:
        for child in procs:
            child.stop()
        for child in procs:
            child.wait()


if __name__ == "__main__":
    main()
