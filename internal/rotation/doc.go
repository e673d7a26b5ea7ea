// Package rotation rotates a KEK and rewraps every committed backup's data
// key under the new primary version (issue 5, docs/format.md §3).
//
// Run rotates the provider's KEK (when asked), then, for every backup with
// a manifest, adds a key object wrapped under the primary version at its
// deterministic name (envelope.KeyObjectName) and reads it back to check
// that it unwraps to the manifest's data key. Artifacts and existing key
// objects are never touched: the store is write-once, and rotation only
// adds objects. Because the new object's name is a function of the KEK
// reference (and, for a provider that rotates material under an unchanged
// version, of the material generation: envelope.KeyObjectNameAt,
// docs/format.md §3.2), a rerun after an interruption finds
// what an earlier run wrote (an existing object, or store.ErrExists on
// Put) and verifies it instead of writing again: Run is idempotent and
// resumable.
//
// RunRecord and Publish turn what a `keys rotate` run did into the
// signed rotation evidence record of each store it touched; its outcome
// is success only when every backup was rewrapped and verified.
//
// Only when every backup holds a verified key object under the primary
// does Run retire old versions, and then only those MayRetire allows under
// the policy. MayRetire is the whole retirement rule, a pure function of a
// State, so it is table-tested apart from any provider or store.
package rotation
