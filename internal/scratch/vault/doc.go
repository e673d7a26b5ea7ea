// Package vault runs a scratch Vault for drills: a `vault server -dev`
// process on 127.0.0.1, with the transit engine mounted, into which a
// backup's transit keys are restored (POST transit/restore/<name>) so that
// the canaries made at backup time can be decrypted and compared with the
// manifest (docs/format.md §6.3).
//
// The binary is found like the embedded scratch cluster's kube-apiserver:
// $LIFEBOAT_VAULT, else vault beside lifeboat's own executable (bin/ after
// `make build testbin`); Locate says how to build it when it is missing.
//
// The server gets a random root token (never logged or returned), its own
// 0700 temporary directory as HOME, an environment without VAULT_*
// variables, and a free loopback port (dev mode puts its cluster listener
// on the next port). It keeps everything in memory. Stop kills it (its
// whole process group) and removes the directory; on Linux it also dies
// with lifeboat. Its output, which includes the root token, is kept only
// in memory, and shown redacted when the server fails to start.
package vault
