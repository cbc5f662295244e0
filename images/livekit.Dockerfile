# LiveKit server for the chart's `livekit.deploy`, with Debian's Redis in the same image (the
# chart runs it as its own Deployment when several LiveKit servers share rooms).
# Build context: a folder holding the `livekit-server` binary (hack/node builds it from the
# pinned Go module, github.com/livekit/livekit-server; lingo_node.images does this for the real node).
# BASE_IMAGE: any Debian bookworm; its DEBIAN_PACKAGES are installed unless the base has them.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG DEBIAN_PACKAGES="ca-certificates redis-server"
RUN missing=$(for p in $DEBIAN_PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done); \
    if [ -n "$missing" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $missing && rm -rf /var/lib/apt/lists/*; \
    fi
COPY livekit-server /usr/local/bin/livekit-server
USER 10001
EXPOSE 7880 7881
CMD ["livekit-server"]
