# Image of the GitHub container Action (action.yml: `runs.image: Dockerfile`) and of the
# prebuilt ghcr.io/ORG/pg-s3-backup images that .github/workflows/release.yml publishes.
#
# Base images are pinned by the digest of their multi-arch index (amd64 and arm64 among the
# platforms), as listed by docker-library/repo-info; the tag is documentation only. To bump one,
# change tag and digest together: `docker buildx imagetools inspect rust:1.95-slim-bookworm`.
#
# Size estimate, uncompressed (roughly 80 MB compressed to pull):
#   debian:bookworm-slim                                       ~75 MB
#   ca-certificates, openssl                                    ~3 MB
#   six postgresql-client-NN (14..19), ~8-11 MB each           ~60 MB
#   their shared libraries: libpq5, libssl3, Kerberos, LDAP,
#     readline, lz4, zstd                                       ~10 MB
#   perl, perl-modules, libperl (postgresql-client-common's
#     pg_wrapper is Perl and the clients depend on it)          ~47 MB
#   pg-s3-backup, stripped                                      ~22 MB
#   total                                                      ~215 MB
# Each client major is needed: the binary runs /usr/lib/postgresql/<server major>/bin/pg_dump,
# since pg_dump refuses servers newer than itself and an older server's dump is best made by
# its own major (or, failing that, the nearest newer one).

# --- build ---------------------------------------------------------------------------------
# rust:1.95-slim-bookworm = Rust 1.95.0 on Debian 12 (the runtime's glibc, 2.36).
FROM rust:1.95-slim-bookworm@sha256:caaf9ca7acd474892186860307d6f28e51fdbc1a4eada459fcff81517cf46a36 AS build
# The image has gcc and libc6-dev, all that aws-lc-sys (rustls' crypto) and libdeflate-sys (the
# compressor, C) need to compile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
COPY . /src
RUN cargo build --release --locked --manifest-path /src/Cargo.toml

# --- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim@sha256:abd67ffcfa541b485a3dff59865ab629aa048a6c613e639d36e7456b0b229241

# The PostgreSQL project's apt repository (apt.postgresql.org, suite bookworm-pgdg), its key
# added as https://wiki.postgresql.org/wiki/Apt documents: the ASCII-armoured key in
# /usr/share/postgresql-common/pgdg, referenced by `signed-by`. curl only fetches the key and is
# purged again. Debian's own repository has a single client major (15); 13 is end-of-life.
# Versions are not pinned: each rebuild should get the current minor releases (security fixes).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsS -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        postgresql-client-14 \
        postgresql-client-15 \
        postgresql-client-16 \
        postgresql-client-17 \
        postgresql-client-18 \
        postgresql-client-19 \
    && apt-get purge -y --auto-remove curl \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /src/target/release/pg-s3-backup /usr/local/bin/pg-s3-backup

# No USER (GitHub runs container actions as root so they can write the workspace and the
# $GITHUB_OUTPUT file) and no WORKDIR (GitHub sets it to /github/workspace).
ENTRYPOINT ["/usr/local/bin/pg-s3-backup", "backup"]
