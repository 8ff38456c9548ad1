# One image for every process of the Procfile: web (the default command), worker and the release
# check. How to build and run it, and why each line is here: docs/deployment.md#docker-anywhere-else
FROM python:3.11-slim

# Logs unbuffered; no .pyc written at run time (the installed code is read-only to the relay's
# user, and pip compiled it at install time); no pip cache kept in the image.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The dependencies first, exactly as the lock pins them, every file checked against its hash: this
# layer is rebuilt only when requirements.txt changes.
COPY requirements.txt /src/
RUN pip install --require-hashes -r /src/requirements.txt

# Then the relay itself, without dependencies (all of them are above): the package as the wheel
# ships it (config with relay.yaml, relay, workers, wsgi.py) and the `relay` command.
COPY pyproject.toml README.md wsgi.py /src/
COPY config /src/config
COPY relay /src/relay
COPY workers /src/workers
RUN pip install --no-deps /src && rm -rf /src

# Not root. The relay writes nothing to disk; gunicorn's worker heartbeat files go to /tmp.
RUN useradd --create-home --uid 10001 relay
USER relay
WORKDIR /home/relay

EXPOSE 8000
# The Procfile's web line, run as a Procfile runner runs it: through bash, which expands
# ${PORT:-8000} and the other defaults, then execs gunicorn, so that gunicorn itself receives the
# SIGTERM of `docker stop` and drains. The other processes, from the same image:
#   docker run IMAGE python -m workers                             (the Procfile's worker)
#   docker run IMAGE python -m relay.cli check-config --connect    (its release check)
CMD ["bash", "-c", "gunicorn --bind ${BIND_HOST:-0.0.0.0}:${PORT:-8000} --workers ${WEB_CONCURRENCY:-2} --worker-class relay.web.server.IngestWorker --threads 4 --no-control-socket --logger-class relay.logs.GunicornLogger --preload wsgi:app"]
