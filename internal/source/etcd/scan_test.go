package etcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd/etcdtest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// snapshotBytes takes a whole snapshot from a member, trailer included.
func snapshotBytes(t *testing.T, ctx context.Context, cli *clientv3.Client) []byte {
	t.Helper()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// scanOf feeds data to a scan in chunks of the given size.
func scanOf(data []byte, chunk int) *snapshotScan {
	s := &snapshotScan{}
	for len(data) > 0 {
		k := min(chunk, len(data))
		s.Write(data[:k])
		data = data[k:]
	}
	return s
}

func sameInventory(a, b catalog.Inventory) bool {
	if a.Keys != b.Keys || a.Digest != b.Digest || a.Version != b.Version || len(a.Prefixes) != len(b.Prefixes) {
		return false
	}
	for k, v := range a.Prefixes {
		if b.Prefixes[k] != v {
			return false
		}
	}
	return true
}

// TestScanMatchesMember: on a real etcd with a history of puts,
// overwrites, deletions, transactions, leases, values spanning many pages,
// a compaction and a defragmentation, the inventory the scan reads from
// the snapshot's bytes equals the keyspace the member serves, at its
// current revision and at earlier ones down to the compaction; below it,
// the scan refuses.
func TestScanMatchesMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	r := rand.New(rand.NewPCG(1, 2))
	val := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	put := func(k, v string, opts ...clientv3.OpOption) int64 {
		t.Helper()
		resp, err := cli.Put(ctx, k, v, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	// Thousands of small keys (branch pages), some big values (overflow
	// pages), rewritten and deleted in turn.
	for i := range 3000 {
		put(fmt.Sprintf("/registry/configmaps/ns-%d/cm-%04d", i%7, i), val(50+r.IntN(400)))
	}
	for i := range 12 {
		put(fmt.Sprintf("/registry/secrets/big/s-%02d", i), val(20<<10+r.IntN(200<<10)))
	}
	early := put("/registry/pods/a/p", "early")
	for i := 0; i < 3000; i += 3 {
		put(fmt.Sprintf("/registry/configmaps/ns-%d/cm-%04d", i%7, i), val(100))
	}
	if _, err := cli.Delete(ctx, "/registry/configmaps/ns-1/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpPut("/registry/pods/a/q", "q"),
		clientv3.OpDelete("/registry/pods/a/p"),
		clientv3.OpPut("/registry/pods/b/r", val(9000)),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	put("/registry/leases/kube-node-lease/n1", "lease", clientv3.WithLease(lease.ID))
	put("/registry/leases/kube-node-lease/n2", "lease", clientv3.WithLease(lease.ID))
	compactAt := put("/registry/pods/a/p", "again")
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	mid := put("/registry/secrets/big/s-03", val(300<<10))
	if _, err := cli.Compact(ctx, compactAt, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i += 5 {
		put(fmt.Sprintf("/registry/configmaps/ns-%d/cm-%04d", i%7, i), val(200))
	}
	if _, err := cli.Delete(ctx, "/registry/secrets/big/s-07"); err != nil {
		t.Fatal(err)
	}
	last := put("\x00edge", "\xff")

	check := func(name string, data []byte) {
		t.Helper()
		for _, rev := range []int64{last, mid, compactAt} {
			want, err := ReadInventory(ctx, cli.KV, rev, catalog.InventoryVersion)
			if err != nil {
				t.Fatal(err)
			}
			for _, chunk := range []int{1 << 20, 32 << 10, 4093} {
				got, err := scanOf(data, chunk).Inventory(rev)
				if err != nil {
					t.Fatalf("%s: revision %d, chunks of %d: %v", name, rev, chunk, err)
				}
				if !sameInventory(got, want) {
					t.Fatalf("%s: revision %d, chunks of %d: scan %+v, member %+v", name, rev, chunk, got, want)
				}
			}
		}
		if _, err := scanOf(data, 64<<10).Inventory(early); !errors.Is(err, ErrCompactedPast) {
			t.Fatalf("%s: an inventory below the compaction: %v", name, err)
		}
	}
	check("after compaction", snapshotBytes(t, ctx, cli))
	if _, err := cli.Defragment(ctx, e.Endpoint); err != nil {
		t.Fatal(err)
	}
	check("after defragmentation", snapshotBytes(t, ctx, cli))
}

// TestScanEmptyKeyspace: a new member's key bucket is an inline page.
func TestScanEmptyKeyspace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	st, err := cli.Status(ctx, e.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	got, err := scanOf(snapshotBytes(t, ctx, cli), 1<<20).Inventory(st.Header.Revision)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReadInventory(ctx, cli.KV, st.Header.Revision, catalog.InventoryVersion)
	if err != nil {
		t.Fatal(err)
	}
	if !sameInventory(got, want) {
		t.Fatalf("scan %+v, member %+v", got, want)
	}
	resp, err := cli.Put(ctx, "/registry/one", "1")
	if err != nil {
		t.Fatal(err)
	}
	got, err = scanOf(snapshotBytes(t, ctx, cli), 1<<20).Inventory(resp.Header.Revision)
	if err != nil || got.Keys != 1 || got.Prefixes["/registry/one"] != 1 {
		t.Fatalf("one key: %+v, %v", got, err)
	}
}

// TestStreamFallsBackToMember: where the snapshot's bytes cannot give the
// inventory (here, pages larger than the scan may hold back), the stream
// reads it from the member, and says so.
func TestStreamFallsBackToMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	for i := range 5 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/secrets/a/%d", i), strings.Repeat("x", 40<<10)); err != nil {
			t.Fatal(err)
		}
	}
	old := maxScanSpan
	maxScanSpan = 8 << 10
	t.Cleanup(func() { maxScanSpan = old })
	s, err := Snapshot(ctx, Options{Endpoints: []string{e.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	info, complete := s.Info()
	want, err := ReadInventory(ctx, cli.KV, info.Revision, catalog.InventoryVersion)
	if err != nil {
		t.Fatal(err)
	}
	if !complete || s.InventoryFrom() != InventoryFromMember || !sameInventory(info.Inventory, want) || info.Inventory.Keys != 5 {
		t.Fatalf("complete %v, from %q, inventory %+v, member %+v", complete, s.InventoryFrom(), info.Inventory, want)
	}
}

// boltSnapshot builds a bbolt file the way etcd lays one out (a meta
// bucket, a key bucket of revision-keyed KeyValues), runs more on it, and
// returns the bytes a snapshot of it streams: the file and a trailer.
func boltSnapshot(t *testing.T, fill func(tx *bbolt.Tx) error, more ...func(tx *bbolt.Tx) error) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, f := range append([]func(*bbolt.Tx) error{fill}, more...) {
		if err := db.Update(f); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := db.View(func(tx *bbolt.Tx) error { _, err := tx.WriteTo(&buf); return err }); err != nil {
		t.Fatal(err)
	}
	buf.Write(make([]byte, trailerSize)) // the scan does not check the trailer; the stream does
	return buf.Bytes()
}

// revKeyOf is the key bucket's key for revision main, sub.
func revKeyOf(main, sub uint64, tomb bool) []byte {
	k := make([]byte, 17, 18)
	binary.BigEndian.PutUint64(k, main)
	k[8] = '_'
	binary.BigEndian.PutUint64(k[9:], sub)
	if tomb {
		k = append(k, 't')
	}
	return k
}

// kvBytes is a stored mvccpb.KeyValue: key (1), mod_revision (3), value (5).
func kvBytes(key string, modRev uint64, value []byte) []byte {
	b := []byte{0x0a}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if modRev > 0 {
		b = append(b, 0x18)
		b = binary.AppendUvarint(b, modRev)
		b = append(b, 0x2a)
		b = binary.AppendUvarint(b, uint64(len(value)))
		b = append(b, value...)
	}
	return b
}

// TestScanIgnoresWhatIsNotReachable: pages a writer of values can shape
// (a value whose page-aligned blocks each look like a leaf of the key
// bucket holding a key that does not exist, with the page ID of the place
// it lands) and freed pages with stale entries (a deleted key's revisions,
// removed as a compaction removes them) do not count; only pages reachable
// from the root do.
func TestScanIgnoresWhatIsNotReachable(t *testing.T) {
	const plantedLen = 20 * 4096
	fake := func(id uint64) []byte {
		p := make([]byte, 4096)
		binary.LittleEndian.PutUint64(p, id)
		binary.LittleEndian.PutUint16(p[8:], leafPageFlag)
		binary.LittleEndian.PutUint16(p[10:], 1)
		k := revKeyOf(2, 0, false)
		v := kvBytes("/registry/secrets/planted/x", 2, []byte("planted"))
		binary.LittleEndian.PutUint32(p[16+4:], pageElementSize) // pos: right after the element
		binary.LittleEndian.PutUint32(p[16+8:], uint32(len(k)))
		binary.LittleEndian.PutUint32(p[16+12:], uint32(len(v)))
		copy(p[32:], k)
		copy(p[32+len(k):], v)
		return p
	}
	fill := func(planted []byte) func(tx *bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			meta, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			if err := meta.Put([]byte("finishedCompactRev"), revKeyOf(1, 0, false)); err != nil {
				return err
			}
			kb, err := tx.CreateBucket([]byte("key"))
			if err != nil {
				return err
			}
			rev := uint64(10)
			add := func(key string, v []byte) error {
				rev++
				return kb.Put(revKeyOf(rev, 0, false), kvBytes(key, rev, v))
			}
			for i := range 500 {
				if err := add(fmt.Sprintf("/registry/configmaps/a/cm-%03d", i), []byte(strings.Repeat("v", i))); err != nil {
					return err
				}
			}
			if err := add("/registry/configmaps/b/planted", planted); err != nil {
				return err
			}
			// A key written and then deleted: its entries go, as a
			// compaction removes them, leaving freed pages behind.
			for i := range 200 {
				if err := add(fmt.Sprintf("/registry/secrets/gone/s-%03d", i), []byte(strings.Repeat("g", 300))); err != nil {
					return err
				}
			}
			return nil
		}
	}
	removeGone := func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte("key")).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Contains(v, []byte("/registry/secrets/gone/")) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	// First with a marker, to learn where the value lands; bbolt lays out
	// the same operations on values of the same sizes the same way, so the
	// second file puts each fake page at the offset of its own page ID.
	marker := bytes.Repeat([]byte("M"), plantedLen)
	at := bytes.Index(boltSnapshot(t, fill(marker), removeGone), marker)
	if at < 0 {
		t.Fatal("the marker value is not in the file")
	}
	skip := (4096 - at%4096) % 4096
	planted := make([]byte, skip, plantedLen)
	for id := uint64(at+skip) / 4096; len(planted)+4096 <= plantedLen; id++ {
		planted = append(planted, fake(id)...)
	}
	planted = append(planted, make([]byte, plantedLen-len(planted))...)
	data := boltSnapshot(t, fill(planted), removeGone)
	if bytes.Index(data, planted) != at {
		t.Fatal("the second file lays the value out elsewhere")
	}
	if !bytes.Contains(data, []byte("/registry/secrets/gone/s-100")) {
		t.Fatal("the freed pages were reused; the test no longer has stale entries to ignore")
	}
	s := scanOf(data, 8192)
	got, err := s.Inventory(1 << 40)
	if err != nil {
		t.Fatal(err)
	}
	var plantedSeen, staleSeen int
	for _, p := range s.pages {
		if p.kind == kindLeaf && !p.seen {
			plantedSeen += bytes.Count(s.chunks[p.chunk][p.start:p.end], []byte("/registry/secrets/planted/x"))
			staleSeen += bytes.Count(s.chunks[p.chunk][p.start:p.end], []byte("/registry/secrets/gone/"))
		}
	}
	if plantedSeen < 10 || staleSeen == 0 {
		t.Fatalf("the scan read %d planted pages and %d stale entries as candidates; the test means them to be there and ignored", plantedSeen, staleSeen)
	}
	want, _ := catalog.NewInventoryBuilder(catalog.InventoryVersion)
	for i := range 500 {
		want.Add(fmt.Appendf(nil, "/registry/configmaps/a/cm-%03d", i), []byte(strings.Repeat("v", i)))
	}
	want.Add([]byte("/registry/configmaps/b/planted"), planted)
	if w := want.Inventory(); !sameInventory(got, w) {
		t.Fatalf("scan %d keys %v, want %d keys %v", got.Keys, got.Prefixes, w.Keys, w.Prefixes)
	}
}

// TestScanRefuses: what the scan cannot read is an error (the stream then
// reads the member), never an inventory.
func TestScanRefuses(t *testing.T) {
	data := boltSnapshot(t, func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("meta")); err != nil {
			return err
		}
		kb, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for i := range 300 {
			if err := kb.Put(revKeyOf(uint64(i+2), 0, false), kvBytes(fmt.Sprintf("/k/%03d", i), uint64(i+2), make([]byte, 100))); err != nil {
				return err
			}
		}
		return nil
	})
	if _, err := scanOf(data, 4096).Inventory(1000); err != nil {
		t.Fatalf("the unchanged file: %v", err)
	}
	cases := map[string]func([]byte) []byte{
		"cut short": func(b []byte) []byte { return b[:len(b)-4096] },
		"no meta":   func(b []byte) []byte { return b[:40] },
		"bad magic": func(b []byte) []byte { b[16] ^= 1; return b },
		"big-endian": func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[16:], boltMagic)
			return b
		},
		"meta checksum": func(b []byte) []byte { b[16+40] ^= 1; return b },
		"a reachable page overwritten": func(b []byte) []byte {
			for off := 2 * 4096; off < len(b)-4096; off += 4096 {
				if binary.LittleEndian.Uint16(b[off+8:]) == leafPageFlag && bytes.Contains(b[off:off+4096], []byte("/k/150")) {
					clear(b[off : off+16])
					return b
				}
			}
			t.Fatal("no leaf holds /k/150")
			return nil
		},
		"an element of the key bucket that is not a revision": func(b []byte) []byte {
			i := bytes.Index(b, []byte("/k/150"))
			b[i-2-17+8] = '-' // the revision key's '_'
			return b
		},
		"a stored value that is not a KeyValue": func(b []byte) []byte {
			i := bytes.Index(b, []byte("/k/150"))
			b[i-2] = 0xff // the KeyValue's first tag
			return b
		},
	}
	for name, f := range cases {
		if inv, err := scanOf(f(bytes.Clone(data)), 4096).Inventory(1000); err == nil {
			t.Errorf("%s: inventory %+v, want an error", name, inv)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Past its memory budget the scan stops and lets go of what it kept.
	old := maxScanMemory
	maxScanMemory = 4096
	t.Cleanup(func() { maxScanMemory = old })
	s := scanOf(data, 4096)
	if inv, err := s.Inventory(1000); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("over budget: inventory %+v, error %v", inv, err)
	}
	if s.chunks != nil || s.pages != nil || s.buf != nil {
		t.Error("over budget, the scan still holds its summaries")
	}
}

// TestRecvPool: buffers come back at the length asked for, from the tier
// that holds it, and buffers of other capacities are not pooled.
func TestRecvPool(t *testing.T) {
	var p recvPool
	for _, n := range []int{1, 511, 512, 513, 32 << 10, 4 << 20, 4<<20 + 1} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		p.Put(b)
		if b2 := p.Get(n); len(*b2) != n {
			t.Fatalf("Get(%d) after Put: len %d", n, len(*b2))
		}
	}
	odd := make([]byte, 1000)
	p.Put(&odd) // not a power of two: dropped
	if b := p.Get(1000); cap(*b) != 1024 {
		t.Fatalf("Get(1000) from the 1 KiB tier: cap %d", cap(*b))
	}
}

// TestSnapshotCodec: a SnapshotResponse decodes the same through the
// codec as through its generated method, whole or split across buffers.
func TestSnapshotCodec(t *testing.T) {
	want := &pb.SnapshotResponse{Header: &pb.ResponseHeader{Revision: 7}, RemainingBytes: 12345, Blob: bytes.Repeat([]byte("blob"), 9000), Version: "3.6.0"}
	raw, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, parts := range []int{1, 2, 7} {
		var data mem.BufferSlice
		step := len(raw)/parts + 1
		for off := 0; off < len(raw); off += step {
			data = append(data, mem.SliceBuffer(raw[off:min(off+step, len(raw))]))
		}
		var got pb.SnapshotResponse
		if err := (snapshotCodec{}).Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Blob, want.Blob) || got.Version != want.Version || got.RemainingBytes != want.RemainingBytes {
			t.Fatalf("%d parts: blob %d bytes, version %q, remaining %d", parts, len(got.Blob), got.Version, got.RemainingBytes)
		}
		releaseBlob(got.Blob)
	}
	var got pb.SnapshotResponse
	if err := (snapshotCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw[:len(raw)-3])}, &got); err == nil {
		t.Fatal("a cut message decoded")
	}
}

// TestScanBoundsShapedPages: a page shaped inside a value cannot make the
// scan keep or hash more than its bytes (elements that overlap are
// refused), and candidates that overlap each other cannot make it read the
// stream many times over (it stops, and the member is read instead).
func TestScanBoundsShapedPages(t *testing.T) {
	// A leaf whose 60,000 elements all point at the same 2 KiB value.
	page := make([]byte, 1<<20)
	binary.LittleEndian.PutUint16(page[10:], 60000)
	dataAt := pageHeaderSize + 60000*pageElementSize
	for i := range 60000 {
		e := page[pageHeaderSize+i*pageElementSize:]
		binary.LittleEndian.PutUint32(e[0:], bucketLeafFlag)
		binary.LittleEndian.PutUint32(e[4:], uint32(dataAt-pageHeaderSize-i*pageElementSize))
		binary.LittleEndian.PutUint32(e[8:], 1)
		binary.LittleEndian.PutUint32(e[12:], 2048)
	}
	if out, err := appendLeaf(nil, page, 60000); err == nil || len(out) > 4096 {
		t.Fatalf("overlapping elements: %d bytes kept, error %v", len(out), err)
	}
	branch := make([]byte, 4096)
	binary.LittleEndian.PutUint16(branch[10:], 2)
	for i := range 2 {
		e := branch[pageHeaderSize+i*pageElementSize:]
		binary.LittleEndian.PutUint32(e[0:], uint32(2*pageElementSize-i*pageElementSize)) // both at the same key
		binary.LittleEndian.PutUint32(e[4:], 4)
	}
	if _, err := appendChildren(nil, branch, 2); err == nil {
		t.Fatal("overlapping branch keys were read")
	}

	// A file whose every page position after the meta pages is a leaf
	// candidate spanning 64 pages, with one element that runs to the end
	// of its span: each candidate would hash 256 KiB for 4 KiB of stream.
	const pages = 600
	file := make([]byte, pages*4096)
	meta := file[pageHeaderSize:]
	binary.LittleEndian.PutUint32(meta[0:], boltMagic)
	binary.LittleEndian.PutUint32(meta[4:], boltVersion)
	binary.LittleEndian.PutUint32(meta[8:], 4096)
	binary.LittleEndian.PutUint64(meta[40:], pages)
	h := fnv.New64a()
	h.Write(meta[:56])
	binary.LittleEndian.PutUint64(meta[56:], h.Sum64())
	for id := 2; id < pages; id++ {
		p := file[id*4096:]
		binary.LittleEndian.PutUint64(p, uint64(id))
		binary.LittleEndian.PutUint16(p[8:], leafPageFlag)
		binary.LittleEndian.PutUint16(p[10:], 1)
		binary.LittleEndian.PutUint32(p[12:], 63) // overflow
		binary.LittleEndian.PutUint32(p[16+4:], pageElementSize)
		binary.LittleEndian.PutUint32(p[16+8:], 1)
		binary.LittleEndian.PutUint32(p[16+12:], 64*4096-32-1)
	}
	s := scanOf(append(file, make([]byte, trailerSize)...), 64<<10)
	if _, err := s.Inventory(10); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("overlapping candidates: %v", err)
	}
	if s.work > 3*int64(len(file))+int64(maxScanSpan) {
		t.Fatalf("the scan read %d bytes of candidates for a %d-byte file", s.work, len(file))
	}
}

// TestScanFeedStop: stop from another goroutine while write is blocked on
// a full queue neither panics nor leaves write blocked, and inventory
// then reports the scan stopped.
func TestScanFeedStop(t *testing.T) {
	f := newScanFeed()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		chunk := make([]byte, scanChunk)
		for range 1000 {
			f.write(chunk)
		}
	}()
	time.Sleep(10 * time.Millisecond)
	f.stop()
	f.stop()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("write still blocked after stop")
	}
	if _, err := f.inventory(1); err == nil {
		t.Fatal("inventory after stop gave no error")
	}
}

// TestSnapshotCodecSplits: the codec decodes a message split at any byte,
// including between a varint's bytes, skips fields it does not know, and
// refuses a message cut inside a field.
func TestSnapshotCodecSplits(t *testing.T) {
	want := &pb.SnapshotResponse{Header: &pb.ResponseHeader{Revision: 1 << 40, ClusterId: 99}, RemainingBytes: 1<<63 + 5, Blob: bytes.Repeat([]byte{0xAB, 0x01}, 300), Version: "3.6.0"}
	raw, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Fields a SnapshotResponse does not have, of each wire type but groups.
	raw = protowire.AppendTag(raw, 9, protowire.Fixed32Type)
	raw = protowire.AppendFixed32(raw, 7)
	raw = protowire.AppendTag(raw, 10, protowire.Fixed64Type)
	raw = protowire.AppendFixed64(raw, 7)
	raw = protowire.AppendTag(raw, 11, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 1<<50)
	raw = protowire.AppendTag(raw, 12, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("unknown"))
	check := func(name string, data mem.BufferSlice) {
		t.Helper()
		var got pb.SnapshotResponse
		if err := (snapshotCodec{}).Unmarshal(data, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Blob, want.Blob) || got.Version != want.Version || got.RemainingBytes != want.RemainingBytes {
			t.Fatalf("%s: blob %d bytes, version %q, remaining %d", name, len(got.Blob), got.Version, got.RemainingBytes)
		}
		releaseBlob(got.Blob)
	}
	for cut := 0; cut <= len(raw); cut++ {
		check(fmt.Sprintf("split at %d", cut), mem.BufferSlice{mem.SliceBuffer(raw[:cut]), mem.SliceBuffer(raw[cut:])})
	}
	var bytewise mem.BufferSlice
	for i := range raw {
		bytewise = append(bytewise, mem.SliceBuffer(raw[i:i+1]))
	}
	check("a byte a buffer", bytewise)
	// Cut inside the blob, inside the blob's length (600 takes two varint
	// bytes), inside field 11's varint, inside the header.
	blobAt := bytes.Index(raw, want.Blob)
	for _, cut := range []int{blobAt + 100, blobAt - 1, len(raw) - len("unknown") - 2 - 3, 3} {
		var got pb.SnapshotResponse
		if err := (snapshotCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw[:cut])}, &got); err == nil {
			t.Errorf("a message cut at %d of %d bytes decoded", cut, len(raw))
		}
	}
	// What a broken or hostile member could send is refused, not a panic
	// or a huge allocation.
	for name, msg := range map[string][]byte{
		"a blob of 2^63 bytes":    protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.BytesType), 1<<63),
		"an 11-byte varint":       append(protowire.AppendTag(nil, 2, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"field number 0":          {0x02, 0x00},
		"a group":                 protowire.AppendTag(nil, 5, protowire.StartGroupType),
		"a group's end":           protowire.AppendTag(nil, 5, protowire.EndGroupType),
		"wire type 6":             {5<<3 | 6},
		"wire type 7":             {5<<3 | 7},
		"a fixed64 cut short":     append(protowire.AppendTag(nil, 9, protowire.Fixed64Type), 1, 2, 3),
		"a tag and nothing after": protowire.AppendTag(nil, 2, protowire.VarintType),
	} {
		var got pb.SnapshotResponse
		if err := (snapshotCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &got); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzSnapshotCodec: however a message is split across buffers, the codec
// decodes it the same, and what it decodes is what the generated decoder
// reads from the same bytes.
func FuzzSnapshotCodec(f *testing.F) {
	full, _ := (&pb.SnapshotResponse{Header: &pb.ResponseHeader{Revision: 3}, RemainingBytes: 9, Blob: []byte("snapshot bytes"), Version: "3.6.0"}).Marshal()
	f.Add(full, uint16(5))
	f.Add([]byte{}, uint16(0))
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.BytesType), 1<<63), uint16(1))
	f.Fuzz(func(t *testing.T, msg []byte, at uint16) {
		var whole, split pb.SnapshotResponse
		errWhole := (snapshotCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &whole)
		cut := int(at) % (len(msg) + 1)
		errSplit := (snapshotCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg[:cut]), mem.SliceBuffer(msg[cut:])}, &split)
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v; split at %d: %v", errWhole, cut, errSplit)
		}
		if errWhole != nil {
			return
		}
		if !bytes.Equal(whole.Blob, split.Blob) || whole.Version != split.Version || whole.RemainingBytes != split.RemainingBytes {
			t.Fatalf("split at %d decodes otherwise", cut)
		}
		var gen pb.SnapshotResponse
		if err := gen.Unmarshal(msg); err == nil {
			if !bytes.Equal(gen.Blob, whole.Blob) || gen.Version != whole.Version || gen.RemainingBytes != whole.RemainingBytes {
				t.Fatalf("the generated decoder reads blob %d bytes, version %q, remaining %d; the codec %d, %q, %d",
					len(gen.Blob), gen.Version, gen.RemainingBytes, len(whole.Blob), whole.Version, whole.RemainingBytes)
			}
		}
	})
}
