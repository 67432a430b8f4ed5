# syntax=docker/dockerfile:1
# kubgp: one image for the speaker, the node agent and the cluster controller, and the
# kubectl-kubgp plugin. The chart (deploy/helm/kubgp) sets each container's command line:
#   kubgp-speaker run --socket ... --state-dir ...    (speaker)
#   kubgp-controller node --node-name ... ...         (node agent)
#   kubgp-controller cluster ...                      (cluster controller)
#
# Runs as uid 65532 by default, as the chart runs the node agent and the cluster controller.
# What the speaker needs and why (the chart's speaker.capabilities, in values.yaml):
#   NET_BIND_SERVICE  listen on TCP 179 for passive peers (host network: the node's port).
#                     Kubernetes gives added capabilities to uid 0 only, so the chart runs the
#                     speaker container alone as uid 0 with every other capability dropped;
#                     with speaker.capabilities=[] it runs as 65532 with none at all.
#   nothing else      TCP MD5 (TCP_MD5SIG), GTSM (IP_MINTTL / IPV6_MINHOPCOUNT) and TTL socket
#                     options need no capability. NET_ADMIN would be needed only to program
#                     kernel routes over netlink, which the speaker does not do yet.
# Build and push: docs/operations.md, "Build and push the image".
# Nothing is fetched at run time: dependencies are installed into /opt/kubgp at build time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/kubgp
COPY pyproject.toml README.md ./
COPY speaker ./speaker
COPY controller ./controller
RUN /opt/kubgp/bin/pip install --no-cache-dir . \
    && /opt/kubgp/bin/pip uninstall --yes pip \
    && /opt/kubgp/bin/kubgp-speaker --help >/dev/null \
    && /opt/kubgp/bin/kubgp-controller --help >/dev/null \
    && /opt/kubgp/bin/kubectl-kubgp --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kubgp" \
      org.opencontainers.image.description="BGP for Kubernetes: speaker, node agent, cluster controller" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/kubgp /opt/kubgp
ENV PATH=/opt/kubgp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBGP_SPEAKER_SOCKET=/run/kubgp/speaker.sock
USER 65532:65532
CMD ["kubgp-speaker", "--help"]
