package etcd

import (
	"math/bits"
	"sync"
)

// recvPool is the gRPC buffer pool of the snapshot connection. gRPC's own
// pools zero every buffer they hand out; this one does not, because gRPC
// reads a whole frame into a buffer before anything reads it back, and the
// buffers only ever hold this process's own snapshot stream. Zeroing them
// cost about 5% of a backup's CPU (every byte of the snapshot, once more).
// Buffers come in power-of-two sizes from 512 bytes to 4 MiB; larger ones
// are not pooled.
type recvPool struct {
	tiers [recvPoolMax - recvPoolMin + 1]sync.Pool
}

const (
	recvPoolMin = 9  // 512 bytes
	recvPoolMax = 22 // 4 MiB
)

func tierOf(size int) int {
	e := max(bits.Len(uint(size-1)), recvPoolMin)
	return e - recvPoolMin
}

// Get returns a buffer of length size.
func (p *recvPool) Get(size int) *[]byte {
	t := tierOf(size)
	if size <= 0 || t >= len(p.tiers) {
		b := make([]byte, size)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<(t+recvPoolMin))
	return &b
}

// Put returns a buffer Get gave out.
func (p *recvPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<recvPoolMin || c&(c-1) != 0 {
		return
	}
	if t := tierOf(c); t < len(p.tiers) {
		p.tiers[t].Put(b)
	}
}
