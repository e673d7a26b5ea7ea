// Package strictjson decodes lifeboat's JSON formats the way
// docs/format.md requires: one JSON value, no unknown fields, no duplicate
// object keys, nothing after the value. Every reader of a lifeboat format
// (artifact headers, key objects, manifests, retention records, keyrings)
// uses it, so the rule is implemented once.
package strictjson
