// Package velero runs a Velero backup alongside a lifeboat backup, for
// sites that already run Velero: it creates a velero.io/v1 Backup in
// Velero's namespace, waits for the Velero server to finish it, and
// records the outcome (name, phase, errors, warnings, timestamps) for the
// backup's manifest; Discard asks Velero (with a DeleteBackupRequest) to
// delete that Backup when the lifeboat backup fails. The rules are
// docs/format.md §6.4.
//
// Velero's data stays in its own backup storage location; this source
// writes no artifact. It uses Velero's API types
// (github.com/vmware-tanzu/velero/pkg/apis/velero/v1) with client-go's
// dynamic client, converting through runtime.DefaultUnstructuredConverter,
// so lifeboat does not depend on controller-runtime.
package velero
