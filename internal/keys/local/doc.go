// Package local is a KEK provider backed by a keyring file on local disk:
// versioned 256-bit AES keys, wrapping data keys with AES-256-GCM. The file
// format is specified in docs/format.md §4. The keyring must be mode 0600;
// a keyring readable by group or others is refused.
//
// It suits single-cluster installations, air-gapped sites and tests; sites
// with a KMS or Vault should use those providers, which keep KEK material
// out of the cluster.
package local
