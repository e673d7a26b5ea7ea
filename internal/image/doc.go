// Package image builds lifeboat's OCI image without a container engine:
// from static binaries (lifeboat, and the kube-apiserver and Vault its
// in-cluster drills start), CA certificates and a non-root passwd entry,
// FROM scratch, written as an OCI image layout with go-containerregistry.
// It also writes a CycloneDX SBOM of every binary from its Go build
// information (SBOM), for the provenance checks an admission controller
// may make. `make image` calls it through cmd/mkimage; the Dockerfile
// produces the same layout for people with Docker.
package image
