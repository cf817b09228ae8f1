# One image for every production role: web (gunicorn), GPU/CPU workers, beat, migrate.
# docker-compose.yml picks the role with its `command`.
#
#   CPU image (default; torch is the CPU wheel, ~200 MB instead of several GB):
#     docker build -t django-vlm-moderation .
#   GPU image (CUDA build of the same torch version, for the worker-gpu* services):
#     docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#                  -t django-vlm-moderation:cuda .
#   (pick the CUDA index, cu126 / cu128 / ..., that matches the hosts' NVIDIA driver; the
#   torch version itself always comes from requirements.txt and must stay pinned there.)
#
# No secret is baked in: DJANGO_SECRET_KEY, DATABASE_URL, ... come from the environment at run
# time (see docker-compose.yml). collectstatic runs with a throw-away key that is not kept.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# Where torch==<pinned version> is installed from; the default is the CPU build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=demo.settings.production \
    MODERATION_VAR_DIR=/var/lib/moderation \
    MODERATION_MEDIA_ROOT=/data/media \
    HF_HOME=/models/huggingface

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first (cached while only the code changes). torch is installed alone from
# TORCH_INDEX_URL at the version pinned in requirements.txt; the second install then finds it
# satisfied ("2.13.0+cpu" / "2.13.0+cu128" satisfy "torch==2.13.0") and leaves it alone.
COPY requirements.txt /tmp/requirements.txt
RUN TORCH_PIN="$(grep -E '^torch==' /tmp/requirements.txt)" \
    && test -n "$TORCH_PIN" \
    && pip install --index-url "$TORCH_INDEX_URL" "$TORCH_PIN" \
    && pip install -r /tmp/requirements.txt \
    && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# The app itself, as the package a plugin user installs (dependencies are already there).
COPY pyproject.toml README.md /tmp/src/
COPY moderation /tmp/src/moderation
COPY vlm_engine /tmp/src/vlm_engine
COPY workers /tmp/src/workers
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src

# The demo site (settings, urls, wsgi) that runs the app.
COPY manage.py ./
COPY demo ./demo

RUN mkdir -p "$MODERATION_VAR_DIR" "$MODERATION_MEDIA_ROOT" "$HF_HOME" \
    && DJANGO_SECRET_KEY=collectstatic-only-not-a-secret CELERY_BROKER_URL=memory:// \
       python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R app:app "$MODERATION_VAR_DIR" "$MODERATION_MEDIA_ROOT" /models

USER app

EXPOSE 8000
CMD ["gunicorn", "demo.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--timeout", "60", "--access-logfile", "-"]
