// Package etcdtest helps tests that take etcd snapshots: a TCP proxy that
// slows or cuts the connection between a client and etcd, and a way to
// fill an etcd with data. It is imported only by tests.
package etcdtest
