# Image of the GitHub container Action (action.yml: `runs.image: Dockerfile` on main; releases
# point at the published ghcr.io/ORG/pg-s3-backup image instead) and of the Kubernetes CronJob.
#
# Build arguments (the defaults are the release build):
#   BASE_IMAGE    runtime base, default the pinned debian:bookworm-slim below
#   RUST_IMAGE    build stage, default the pinned rust:1.95-slim-bookworm below
#   PG_APT        pgdg (default: apt.postgresql.org, every supported major) or debian (the base's
#                 own apt sources: Debian 12 has one major, 15)
#   PG_CLIENTS    space-separated postgresql-client majors, default "14 15 16 17 18 19"
#   BINARY_STAGE  build (default: compile in the Rust stage) or prebuilt (copy
#                 target/release/pg-s3-backup from the build context; it must be built for the
#                 base's glibc, 2.36 on Debian 12, which the build checks by running it). Any
#                 other value is taken as an image name by `FROM`, and fails as one.
# A build with no registry at all (scripts/container, from ../shared/CONTAINERS.md):
#   podman build --pull=never --network host --build-arg BASE_IMAGE=localhost/bookworm-base \
#     --build-arg PG_APT=debian --build-arg PG_CLIENTS=15 --build-arg BINARY_STAGE=prebuilt .
#
# Base images are pinned by the digest of their multi-arch index (amd64 and arm64 among the
# platforms), as listed by docker-library/repo-info; the tag is documentation only. To bump one,
# change tag and digest together: `docker buildx imagetools inspect rust:1.95-slim-bookworm`.
#
# Each client major is needed: the binary runs /usr/lib/postgresql/<server major>/bin/pg_dump,
# since pg_dump refuses servers newer than itself and an older server's dump is best made by
# its own major (or, failing that, the nearest newer one). BENCHMARKS.md has the image's size.

ARG BASE_IMAGE=debian:bookworm-slim@sha256:abd67ffcfa541b485a3dff59865ab629aa048a6c613e639d36e7456b0b229241
ARG RUST_IMAGE=rust:1.95-slim-bookworm@sha256:caaf9ca7acd474892186860307d6f28e51fdbc1a4eada459fcff81517cf46a36
ARG BINARY_STAGE=build

# --- the binary, compiled -------------------------------------------------------------------
# rust:1.95-slim-bookworm = Rust 1.95.0 on Debian 12 (the runtime's glibc, 2.36). The image has
# gcc and libc6-dev, all that aws-lc-sys (rustls' crypto) and libdeflate-sys (the compressor,
# C) need to compile.
FROM ${RUST_IMAGE} AS build
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
COPY . /src
RUN cargo build --release --locked --manifest-path /src/Cargo.toml \
    && install -D -m 0755 /src/target/release/pg-s3-backup /out/pg-s3-backup

# --- the binary, from the build context ------------------------------------------------------
# The wildcard keeps builders that build every stage (the legacy builder, buildah with
# --skip-unused-stages=false) from failing where there is no target/: Cargo.toml always matches.
# A prebuilt build without the binary fails at the final COPY instead.
FROM scratch AS prebuilt
COPY Cargo.toml target/release/pg-s3-backup* /out/

# --- the one chosen (a stage not named here is not built) -----------------------------------
FROM ${BINARY_STAGE} AS binary

# --- runtime --------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG PG_APT=pgdg
ARG PG_CLIENTS="14 15 16 17 18 19"

# pgdg: the PostgreSQL project's apt repository (suite bookworm-pgdg), its key added as
# https://wiki.postgresql.org/wiki/Apt documents: the ASCII-armoured key in
# /usr/share/postgresql-common/pgdg, referenced by `signed-by`. curl only fetches the key and is
# purged again. Versions are not pinned: each rebuild should get the current minor releases
# (security fixes). Every installed pg_dump must run, or the build fails.
# hadolint ignore=DL3008,SC2086
RUN set -eu; \
    case "$PG_APT" in \
        pgdg | debian) ;; \
        *) echo "PG_APT must be pgdg or debian, not '$PG_APT'" >&2; exit 1 ;; \
    esac; \
    clients=""; \
    for major in $PG_CLIENTS; do \
        case "$major" in \
            1[0-9] | [2-9][0-9]) clients="$clients postgresql-client-$major" ;; \
            *) echo "PG_CLIENTS must be PostgreSQL majors such as '15 16', not '$PG_CLIENTS'" >&2; exit 1 ;; \
        esac; \
    done; \
    [ -n "$clients" ] || { echo "PG_CLIENTS is empty: name at least one major" >&2; exit 1; }; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    if [ "$PG_APT" = pgdg ]; then \
        apt-get install -y --no-install-recommends curl; \
        install -d /usr/share/postgresql-common/pgdg; \
        curl -fsS -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
            https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
        echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
            > /etc/apt/sources.list.d/pgdg.list; \
        apt-get update; \
    fi; \
    apt-get install -y --no-install-recommends $clients; \
    if [ "$PG_APT" = pgdg ]; then apt-get purge -y --auto-remove curl; fi; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    for major in $PG_CLIENTS; do "/usr/lib/postgresql/$major/bin/pg_dump" --version; "/usr/lib/postgresql/$major/bin/pg_dumpall" --version; done

COPY --from=binary /out/pg-s3-backup /usr/local/bin/pg-s3-backup
# The binary must run on this base (a prebuilt one made against a newer glibc would not).
RUN v="$(/usr/local/bin/pg-s3-backup --version)" \
    && case "$v" in "pg-s3-backup "*) echo "$v" ;; *) echo "not pg-s3-backup: '$v'" >&2; exit 1 ;; esac

# No USER (GitHub runs container actions as root so they can write the workspace and the
# $GITHUB_OUTPUT file) and no WORKDIR (GitHub sets it to /github/workspace).
ENTRYPOINT ["/usr/local/bin/pg-s3-backup", "backup"]
