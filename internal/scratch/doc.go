// Package scratch defines where a drill restores a backup: a scratch
// cluster, started from a restored etcd snapshot, that serves the
// Kubernetes API so a drill can verify what came back.
//
// A Provider starts a Cluster; one package per provider implements it.
// scratch/embedded (etcd in this process plus a real kube-apiserver
// process on this machine) is the default; kubeconfig (an existing
// cluster) and kind providers can implement the same interface later.
//
// A scratch cluster holds restored data, which may be PHI: providers bind
// to 127.0.0.1 only, and Stop removes what they wrote.
package scratch
