# kubgp: one image for the node agent, the speaker and the cluster controller.
# Minimal for now: it installs the package and its console scripts. The packaging issue adds
# a non-root user with only the capabilities the speaker needs (NET_BIND_SERVICE for port 179,
# NET_ADMIN for TCP MD5 and kernel routes), multi-arch builds and an SBOM.
FROM python:3.11-slim-bookworm

WORKDIR /src
COPY pyproject.toml README.md ./
COPY speaker ./speaker
COPY controller ./controller
COPY crds ./crds
RUN pip install --no-cache-dir . && rm -rf /src/speaker /src/controller

# The chart sets the command per container: kubgp-speaker run ..., kubgp-controller node ...
CMD ["kubgp-speaker", "--help"]
