// Package plainfile holds a decrypted artifact that another tool must read
// by path (etcdutl reads the etcd snapshot it restores from a file): a
// sealed anonymous memory file when the host and its memory cgroups leave
// room, else a private file, and never anything a reader could find
// changed after lifeboat verified it.
package plainfile
