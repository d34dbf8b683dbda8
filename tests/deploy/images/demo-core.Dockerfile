# The demo MXCP project (demo/core) in the core image, as a user builds theirs:
#   docker build -f tests/deploy/images/demo-core.Dockerfile --build-arg CORE_IMAGE=mxgate/mxcp-core:local demo/core
ARG CORE_IMAGE=mxgate/mxcp-core:local
FROM ${CORE_IMAGE}
COPY --chown=0:0 . /srv/project
