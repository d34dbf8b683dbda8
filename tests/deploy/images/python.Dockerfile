# Stand-in for python:3.11-slim-bookworm where no image can be pulled: Debian's Python 3.11
# with venv on the locally bootstrapped Debian base (tests/deploy/images.sh).
ARG BASE_IMAGE=mxgate-test/debian:bookworm
FROM ${BASE_IMAGE}
# pip trusts its own certifi bundle; the system one carries the machine's CAs (images.sh).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && python3 -m venv --help >/dev/null
