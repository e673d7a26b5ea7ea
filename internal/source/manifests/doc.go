// Package manifests exports a cluster's Kubernetes objects through its API
// server: every listable resource that discovery reports (core, built-in
// groups, CRDs and their custom resources), at the preferred version, as
// one tar of YAML documents with server-owned fields removed, ending with
// an index of every object and its digest (docs/format.md §6.1).
//
// Start discovers the resources and then streams the tar: pages of
// objects are listed, stripped, encoded and written one by one, so memory
// holds one page and the index (about 200 bytes per object), whatever the
// size of the cluster. A list that fails with an error the API server
// reports per resource (forbidden, not found, a 503 from an aggregated
// API whose backend is down) is recorded as skipped and the export goes
// on; any other failure, a 503 from the API server's own groups among
// them (the API server itself is unavailable), ends the stream with that
// error, so that a reader never sees a clean end of a tar that is missing
// objects.
//
// Each resource is listed in pages (Options.PageSize, default 500), the
// next page fetched while the current one is written. When the API server
// answers a continue token with 410 Gone (etcd compacted past the list's
// revision), the export goes on with the inconsistent-continuation token
// the 410 carries, which resumes after the last key listed: no object is
// written twice, but the resource is no longer a snapshot. The index
// (Index.Inconsistent) and the manifest section (Manifests.Inconsistent)
// say so, and Manifests.Skips gives it as a skip, so the backup is
// partial. A 410 without such a token ends that resource, which is then
// recorded as skipped, making the backup partial. Restarting the list
// from the beginning is not an option: its objects are already in the
// stream.
//
// DefaultExcludedResources are never exported (events, leases, computed
// and allocation-only resources), nor are subresources and resources
// without the list verb.
//
// Besides the objects, the export inventories policy objects (RBAC,
// NetworkPolicies, admission policies and webhook configurations,
// ResourceQuotas, LimitRanges and each Namespace's Pod Security labels)
// with their digests, for the catalog manifest. Object contents and names
// are never logged.
package manifests
