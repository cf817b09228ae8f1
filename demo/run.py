"""``make run``: migrate, create demo credentials, start a real Celery worker and the web server."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "8000"))
PYTHON = sys.executable


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout or ""


def demo_credentials(var_dir: Path) -> tuple[str, str]:
    """The admin password and a client API key, created once and kept in var/ (mode 600)."""
    path = var_dir / "demo-credentials.txt"
    if path.exists():
        password, key = path.read_text().split("\n")[:2]
        return password, key
    password = secrets.token_urlsafe(12)
    manage("shell", "-c", "from django.contrib.auth import get_user_model as g; U = g(); "
           f"u = U.objects.filter(username='admin').first() or U.objects.create_superuser('admin', ''); "
           f"u.set_password('{password}'); u.save()")
    key = manage("moderation_apikey", "demo-client", "--name", "make run", capture=True).strip().splitlines()[-1]
    path.write_text(f"{password}\n{key}\n")
    path.chmod(0o600)
    return password, key


def processes_start() -> list[subprocess.Popen[bytes]]:
    celery = [PYTHON, "-m", "celery", "-A", "workers", "worker", "-Q", "gpu,default", "-P", "solo",
              "-c", "1", "-n", "demo-gpu0@%h", "-B", "-s", str(var_dir() / "celerybeat-schedule"),
              "--without-gossip", "--without-mingle", "-l", "info"]
    web = [PYTHON, "manage.py", "runserver", f"{HOST}:{PORT}", "--noreload"]
    return [subprocess.Popen(celery, cwd=ROOT), subprocess.Popen(web, cwd=ROOT)]


def var_dir() -> Path:
    path = Path(os.environ.get("MODERATION_VAR_DIR", ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_notice() -> str:
    """Resolve the models up front, so a fallback to random weights is shown at start, loudly."""
    from vlm_engine.loading import config_roles_real, engine_config_resolve, roles_notice

    profile = os.environ.get("MODERATION_PROFILE", "small")
    tiny_dir = os.environ.get("MODERATION_TINY_DIR", str(var_dir() / "tiny-models"))
    config, notice = engine_config_resolve(profile, tiny_dir=tiny_dir,
                                           device=os.environ.get("MODERATION_DEVICE", "cpu"))
    roles = roles_notice(config_roles_real(config))
    if notice:
        return f"\n{'!' * 78}\n {notice}\n {roles}\n{'!' * 78}"
    return f"\n Models: {config.profile} profile ({config.clip})\n {roles}"


def banner(password: str, key: str, notice: str) -> None:
    base = f"http://{HOST}:{PORT}"
    print(f"""
==============================================================================
 django-vlm-moderation is running
   API docs    {base}/api/v1/docs/
   Admin       {base}/admin/   (user: admin, password: {password})
   Health      {base}/healthz  {base}/readyz
   API key     {key}
 Try:
   curl -H "Authorization: Api-Key {key}" -F image=@meme.jpg -F text="hello" {base}/api/v1/posts/
 Ctrl-C stops the web server and the worker.
=============================================================================={notice}
""", flush=True)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings.dev")
    manage("migrate", "--noinput")
    manage("moderation_setup_groups")
    password, key = demo_credentials(var_dir())
    notice = models_notice()
    children = processes_start()
    banner(password, key, notice)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)
    sys.exit(max((child.returncode or 0) for child in children))


if __name__ == "__main__":
    main()
