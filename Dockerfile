# syntax=docker/dockerfile:1
# The dataops runner: dbt + the `dataops` command, with Microsoft's ODBC Driver 18 for SQL Server
# (dbt-sqlserver connects through pyodbc, which needs a system ODBC driver).
#
#   docker build -t dataops:local .
#   docker run --rm --env-file .env -e DATAOPS_TARGET=staging dataops:local
#
# Credentials never enter the image: dbt/profiles.yml reads them from the environment at run time.

# The Debian release is pinned (bookworm) because Microsoft's apt repository is per release; bump
# both together.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

# msodbcsql18 from packages.microsoft.com (ACCEPT_EULA=Y accepts Microsoft's licence for the
# driver), unixodbc for the driver manager pyodbc loads. curl and gnupg are only needed to add
# the repository and are removed again in the same layer.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
    && . /etc/os-release \
    && curl -fsSL -o /tmp/packages-microsoft-prod.deb \
        "https://packages.microsoft.com/config/debian/${VERSION_ID}/packages-microsoft-prod.deb" \
    && dpkg -i /tmp/packages-microsoft-prod.deb \
    && rm /tmp/packages-microsoft-prod.deb \
    && apt-get update \
    && ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 unixodbc \
    && apt-get purge -y --auto-remove curl gnupg \
    && rm -rf /var/lib/apt/lists/*

# The project lives in /app: the installed package finds dbt/ and environments.yml through
# DATAOPS_PROJECT_ROOT (a non-editable install cannot find them next to its own source).
WORKDIR /app
ENV DATAOPS_PROJECT_ROOT=/app

# Install first from the package metadata and source only, so editing dbt models does not
# reinstall every dependency.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf build src

# Run as an unprivileged user. It owns only what the pipeline writes: the warehouse folder (run
# records and dbt artifacts; mount a volume here) and dbt/ (dbt writes its .user.yml and logs
# beside profiles.yml).
RUN groupadd --system --gid 10001 dataops \
    && useradd --system --uid 10001 --gid dataops --home-dir /home/dataops --create-home \
        --shell /usr/sbin/nologin dataops \
    && mkdir -p /app/warehouse \
    && chown dataops:dataops /app/warehouse
COPY --chown=dataops:dataops dbt ./dbt
COPY environments.yml ./

# Numeric, so platforms that enforce runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# The target comes from DATAOPS_TARGET (see docker-compose*.yml); exit codes 0 / 1 / 2 as in README.md.
CMD ["dataops", "run"]
