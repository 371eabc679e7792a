# The cluster side (included by the top-level Makefile). Root and `scripts/install-deps.sh
# deploy` are needed for image and e2e; everything is written under target/.
#   make validate-manifests  render deploy/kubernetes with kubectl's kustomize and check it
#                            against Kubernetes' own schemas of K8S_VERSIONS, strictly, and
#                            against the deployment's promises (deploy/check-manifests.py)
#   make image               the FROM-scratch OCI image of the static calico-bpf-guard-sync,
#                            one manifest list of every architecture (deploy/image.sh)
#   make e2e                 the DaemonSet's own pod under podman kube play against the test
#                            API server, then the guard's sweep on what it wrote (tests/e2e/run.sh)
.PHONY: deploy-deps validate-manifests image e2e

MANIFEST_TOOLS ?= /opt/calico-bpf-guard-dev/manifest-tools
K8S_VERSIONS ?= 1.28.0 1.31.0 1.37.0
# The image's tag: the sync crate's version (the workspace's, before the sync crate exists).
SYNC_VERSION = $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' $(firstword $(wildcard sync/Cargo.toml) Cargo.toml) | head -n1)

deploy-deps:
	MANIFEST_TOOLS=$(MANIFEST_TOOLS) scripts/install-deps.sh deploy

validate-manifests: deploy-deps
	$(MANIFEST_TOOLS)/bin/python deploy/check-manifests.py --self-test \
	  --kubectl $(MANIFEST_TOOLS)/bin/kubectl --validator $(MANIFEST_TOOLS)/bin/kubernetes-validate \
	  --version $(SYNC_VERSION) $(K8S_VERSIONS)

image: deploy-deps
	deploy/image.sh

e2e: deploy-deps image
	MANIFEST_TOOLS=$(MANIFEST_TOOLS) tests/e2e/run.sh
