// Package volumes takes CSI VolumeSnapshots (snapshot.storage.k8s.io/v1) of
// the PersistentVolumeClaims a backup plan selects, waits until the
// storage system reports each ready, and records where each snapshot's
// data lives (the bound VolumeSnapshotContent, its CSI driver and snapshot
// handle, the restore size) for the backup's manifest. It also deletes
// the plan's earlier VolumeSnapshots whose retention has ended. The rules
// (names, labels, annotations, failure policies, retention) are
// docs/format.md §6.2.
//
// The data itself never passes through lifeboat: it stays in the storage
// system, so this source writes no artifact.
//
// It uses the typed client of github.com/kubernetes-csi/external-snapshotter
// client/v8. The design named client/v6, but the Go module proxy did not
// serve it to this build and its generated clientset does not build
// against today's client-go; v8 speaks the same snapshot.storage.k8s.io/v1
// API.
package volumes
