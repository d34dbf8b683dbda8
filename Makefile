# mxgate — the two quick-start commands are `make demo` and `make test`.
.PHONY: demo test bench setup build lint unit adapter-tests e2e fixture-tests clean-demo image deploy-test

# Installs what the demo and the tests need (Debian packages, Python envs, npm fixture).
setup:
	scripts/setup.sh

build:
	cargo build

# Starts the local OpenID provider, an MXCP core with the mxgate adapter, and mxgate on
# http://127.0.0.1:8000/mcp; Ctrl-C stops all three.
demo:
	scripts/demo.sh

# Every test: formatting and lints, Rust unit and integration tests, the core adapter's tests
# against a real MXCP server, the end-to-end tests with the MCP SDK client, the IdP fixture, and
# the container images, docker-compose demo and Helm chart (deploy-test; needs Docker, which it
# installs and starts; MXGATE_SKIP_DEPLOY_TESTS=1 skips them, loudly).
test: setup lint unit adapter-tests e2e fixture-tests deploy-test
	@echo "make test: all tests passed"

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

unit: build
	cargo test

adapter-tests:
	target/py/core/bin/python -m pytest deploy/mxcp-core/tests -q

e2e: build
	target/py/client/bin/python -m pytest tests/e2e -q

fixture-tests:
	cd tests/fixtures/oidc-provider && npm test --silent

# The images of deploy/: mxgate/mxgate, mxgate/mxcp-core (+ -demo) and mxgate/oidc-provider, tag
# `local`. Without registry access (MXGATE_IMAGE_BASES=auto|upstream|local) it builds local base
# images and passes a host-built release binary (tests/deploy/images.sh).
image:
	tests/deploy/images.sh

# The deploy tests: images read-only and non-root, docker-compose, the Helm chart (lint, schemas,
# checkov) and its pod run in Docker, each with a real MCP client login (tests/deploy/run.sh).
deploy-test:
	tests/deploy/run.sh

# Requests per second and latency: direct to the core, through nginx, through mxgate.
bench:
	MXGATE_SETUP_BENCH=1 scripts/setup.sh
	scripts/bench.sh

clean-demo:
	rm -rf .demo
