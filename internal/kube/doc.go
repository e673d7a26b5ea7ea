// Package kube builds the client configuration lifeboat's Kubernetes
// sources use to reach an API server: a kubeconfig file named in the plan,
// the in-cluster service account, $KUBECONFIG or ~/.kube/config, in that
// order of preference. Rate limits are raised from client-go's defaults so
// that paging through a large cluster is bounded by the server, not by a
// client-side limiter, and every request carries lifeboat's user agent.
package kube
