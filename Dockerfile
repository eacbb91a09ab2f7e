# syntax=docker/dockerfile:1
#
# dnsdisco: `dnsdisco serve` on port 53 (UDP and TCP) as a non-root user.
#
#   docker build -t dnsdisco .
#   docker run -d --name dnsdisco -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:9153:9153 \
#       -e DNSDISCO_ETCD=http://etcd.example:2379 dnsdisco
#   dig @127.0.0.1 hello.svc.local;  curl http://127.0.0.1:9153/readyz
#
# Configuration: every setting is a DNSDISCO_<NAME> variable (`docker run dnsdisco --help`
# lists them), and flags given after the image name are appended to `dnsdisco serve`
# (`docker run dnsdisco --zone svc.local --zone corp.local`). A flag wins over a variable.
# The image has no embedded etcd: set DNSDISCO_ETCD.
#
# Port 53 without root: the interpreter that runs `dnsdisco` is a copy of python,
# /usr/local/bin/dnsdisco-python, carrying the file capability cap_net_bind_service; only that
# copy has it (the `python` that the HEALTHCHECK runs has none). The capability has to be in the
# container's bounding set, which Docker's default set is. With `--cap-drop ALL` add
# `--cap-add NET_BIND_SERVICE` (Kubernetes: drop ALL, add NET_BIND_SERVICE, which the restricted
# Pod Security Standard allows), else the kernel refuses to start dnsdisco ("operation not
# permitted"). Where file capabilities cannot be used, listen on a high port and map it:
#   -e DNSDISCO_LISTEN=0.0.0.0:5353 -p 53:5353/udp -p 53:5353/tcp

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: wheels of dnsdisco and its dependencies (the context is only what .dockerignore lets in)
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- run
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="dnsdisco" \
      org.opencontainers.image.description="DNS for services registered in etcd (CoreDNS/SkyDNS key format)" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libcap2-bin; \
    cp "$(readlink -f /usr/local/bin/python3)" /usr/local/bin/dnsdisco-python; \
    setcap cap_net_bind_service=+ep /usr/local/bin/dnsdisco-python; \
    getcap /usr/local/bin/dnsdisco-python | grep -q cap_net_bind_service; \
    apt-get purge -y --auto-remove libcap2-bin; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10053 --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin dnsdisco

# pip run by dnsdisco-python writes that interpreter into the `dnsdisco` script's #! line.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    set -eux; \
    dnsdisco-python -m pip install --no-cache-dir --no-index --find-links /wheels dnsdisco; \
    head -n 1 /usr/local/bin/dnsdisco | grep -qx '#!/usr/local/bin/dnsdisco-python'; \
    dnsdisco --version

ENV DNSDISCO_LISTEN=0.0.0.0:53 \
    DNSDISCO_HTTP=0.0.0.0:9153 \
    DNSDISCO_EMBEDDED_ETCD=false \
    DNSDISCO_LOG_FORMAT=plain \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10053:10053
EXPOSE 53/udp 53/tcp 9153/tcp

# Healthy = ready: first full sync done and etcd not lost for longer than DNSDISCO_MAX_STALE.
# The slim image has no curl; urlopen raises (exit 1) on a 503. With DNSDISCO_HTTP=off,
# also set HEALTHCHECK NONE.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('DNSDISCO_HTTP', '0.0.0.0:9153').rpartition(':')[2]; u.urlopen('http://127.0.0.1:' + port + '/readyz', timeout=2)"]

ENTRYPOINT ["dnsdisco", "serve"]
