// Package embedded is the default scratch-cluster provider: it restores an
// etcd snapshot into a fresh data directory with etcdutl's snapshot-restore
// library, starts an etcd server in this process (go.etcd.io/etcd/server/v3
// embed) on it, then starts the real kube-apiserver binary on that etcd,
// with the source cluster's encryption-at-rest configuration when one was
// backed up, and waits until GET /readyz answers 200.
//
// Everything listens on 127.0.0.1 only. The apiserver gets new
// service-account signing keys, self-signed serving certificates (its
// --cert-dir) and a static admin bearer token; a kubeconfig file for kubectl
// is written beside them. Start without a snapshot starts an empty cluster
// (lifeboat demo uses one as its source cluster).
//
// The kube-apiserver binary is the one `make testbin` builds into bin/;
// LocateKubeAPIServer finds it. Stop shuts both servers down and removes the
// restored data, which may hold PHI.
package embedded
