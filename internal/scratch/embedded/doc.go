// Package embedded is the default scratch-cluster provider: it restores an
// etcd snapshot into a fresh data directory with etcdutl's snapshot-restore
// library, starts an etcd server in this process (go.etcd.io/etcd/server/v3
// embed) on it, then starts the real kube-apiserver binary on that etcd,
// with the source cluster's encryption-at-rest configuration when one was
// backed up, and waits until GET /readyz answers 200.
//
// Everything listens on 127.0.0.1 only, which every local user can reach,
// so etcd serves its client and peer ports with TLS and requires a client
// certificate: Start makes a throwaway CA (ECDSA P-256, valid a day; its
// key is never written), a server certificate for 127.0.0.1 and a client
// certificate in WorkDir/etcd-pki (0700, files 0600). The apiserver connects
// with that client certificate (--etcd-cafile, --etcd-certfile,
// --etcd-keyfile) and Cluster.EtcdTLS / scratch.Access.EtcdTLS carry it for
// lifeboat's own reads. The apiserver gets new
// service-account signing keys, self-signed serving certificates (its
// --cert-dir) and a static admin bearer token; a kubeconfig file for kubectl
// is written beside them. Start without a snapshot starts an empty cluster
// (lifeboat demo uses one as its source cluster).
//
// The kube-apiserver binary is the one `make testbin` builds into bin/;
// LocateKubeAPIServer finds it. Stop shuts both servers down and removes the
// restored data, which may hold PHI.
package embedded
