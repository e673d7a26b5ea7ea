package etcd

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// The bbolt file format, as far as the scan reads it (docs/format.md
// §6.0.1). Every integer is little-endian.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	pageElementSize = 16 // leaf: flags, pos, ksize, vsize (u32 each); branch: pos, ksize u32, pgid u64
	metaSize        = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	bucketLeafFlag  = 0x01
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	bucketHeader    = 16 // root pgid u64, sequence u64
)

// ErrCompactedPast is returned when the member compacted its keyspace past
// the snapshot's revision between the status call and the snapshot: the
// keyspace at that revision is then in neither; take the backup again.
var ErrCompactedPast = errors.New("etcd compacted past the backup's revision; run the backup again")

// maxScanSpan bounds the bytes one candidate page (with its overflow
// pages) may hold back; a reachable page larger than this makes the scan
// give up, and the inventory is then read from the member. (A variable so
// that a test can lower it.)
var maxScanSpan uint64 = 16 << 20

// maxScanMemory bounds what the scan keeps (leaf summaries, page records,
// branch children): about 42 bytes and the key per revision in the file,
// so some 400,000 revisions of typical Kubernetes keys. Past it the scan
// stops and the inventory is read from the member, whose read is bounded
// by a page. With the layout check of appendLeaf and the work bound of
// parse, memory and work stay bounded whatever the values hold. (A
// variable so that a test can lower it.)
var maxScanMemory = 32 << 20

// smallEntry bounds the key and the value of the other elements a leaf's
// summary keeps (the meta bucket's compaction revisions are 17 bytes).
const smallEntry = 64

// maxTreeDepth bounds the walk from the root; bbolt trees are a few levels.
const maxTreeDepth = 64

type pageKind uint8

const (
	kindLeaf pageKind = iota + 1
	kindBranch
	kindUnread // too large, or its elements point outside it
)

// pageRec summarises one candidate page. For a leaf,
// chunks[chunk][start:end] holds its entries; for a branch,
// children[start:end] its children. It is kept small: there is one per
// candidate page of the file.
type pageRec struct {
	id                uint64
	span              uint64 // pages, overflow included
	kind              pageKind
	seen              bool
	chunk, start, end uint32
}

// arenaChunk is the size of the chunks leaf summaries are kept in: a
// summary never moves once written, so the arena grows without the copy
// (and the transient double size) of one growing slice.
const arenaChunk = 256 << 10

// Entry tags in the arena.
const (
	entryBucket = 'B' // uvarint len ‖ name ‖ uvarint len ‖ bucket value (header, inline page)
	entryRev    = 'R' // main u64 BE ‖ uvarint len ‖ key ‖ SHA-256(value)
	entryDel    = 'D' // the same, for a deletion
	entrySmall  = 'S' // uvarint len ‖ key ‖ uvarint len ‖ value
	entryOther  = 'X' // (nothing): an element none of the above
)

type pendingPage struct {
	id, span     uint64
	flags, count uint16
}

// snapshotScan computes the keyspace inventory at a revision from an etcd
// snapshot's bytes as they are written to it, in page order, holding one
// summary per leaf element (its key and its value's SHA-256) rather than
// the values. Write never fails: a snapshot the scan cannot read is
// reported by Inventory, and the caller reads the inventory another way.
type snapshotScan struct {
	buf      []byte // stream bytes from bufStart on
	bufStart int64
	total    int64
	ps       int64 // page size, once the meta page is read
	root     uint64
	hwm      uint64 // the meta page's high-water page ID
	next     uint64 // next page position to examine
	pending  []pendingPage
	pages    []pageRec
	chunks   [][]byte
	kept     int   // bytes in chunks
	work     int64 // bytes of candidate pages read
	abandon  atomic.Bool
	scratch  []byte
	children []uint64
	unread   map[uint64]string // why each kindUnread page was not read
	err      error
}

// keep stores a leaf's summary in the arena and returns where it is.
func (s *snapshotScan) keep(b []byte) (chunk, start, end uint32) {
	n := len(s.chunks)
	if n == 0 || cap(s.chunks[n-1])-len(s.chunks[n-1]) < len(b) {
		s.chunks = append(s.chunks, make([]byte, 0, max(arenaChunk, len(b))))
		n++
	}
	c := s.chunks[n-1]
	start = uint32(len(c))
	s.chunks[n-1] = append(c, b...)
	s.kept += len(b)
	return uint32(n - 1), start, start + uint32(len(b))
}

// overBudget reports whether what the scan keeps has passed maxScanMemory,
// and if so stops it.
func (s *snapshotScan) overBudget() bool {
	used := s.kept + cap(s.scratch) + len(s.pages)*int(unsafe.Sizeof(pageRec{})) + len(s.children)*8 + len(s.unread)*64
	if used <= maxScanMemory {
		return false
	}
	s.stop(fmt.Errorf("the scan would keep more than %d MiB of summaries (%d pages read so far)", maxScanMemory>>20, len(s.pages)))
	return true
}

// stop ends the scan with err and lets go of everything it holds.
func (s *snapshotScan) stop(err error) {
	if s.err == nil {
		s.err = err
	}
	s.buf, s.chunks, s.scratch, s.pages, s.children, s.pending, s.unread = nil, nil, nil, nil, nil, nil, nil
}

// markUnread records a candidate page that was not read, and why.
func (s *snapshotScan) markUnread(id, span uint64, why string) {
	if s.unread == nil {
		s.unread = make(map[uint64]string)
	}
	s.unread[id] = why
	s.addPage(pageRec{id: id, span: span, kind: kindUnread})
}

func (s *snapshotScan) Write(p []byte) (int, error) {
	if s.err != nil {
		return len(p), nil
	}
	s.buf = append(s.buf, p...)
	s.total += int64(len(p))
	if s.ps == 0 {
		if s.total < pageHeaderSize+metaSize {
			return len(p), nil
		}
		if s.err = s.readMeta(s.buf[:pageHeaderSize+metaSize]); s.err != nil {
			s.buf = nil
			return len(p), nil
		}
		s.next = 2 // pages 0 and 1 are the meta pages
	}
	s.examine()
	s.overBudget()
	return len(p), nil
}

// readMeta reads page 0, the meta page etcd's snapshot starts with.
func (s *snapshotScan) readMeta(b []byte) error {
	m := b[pageHeaderSize:]
	magic := binary.LittleEndian.Uint32(m[0:])
	if magic != boltMagic {
		if binary.BigEndian.Uint32(m[0:]) == boltMagic {
			return errors.New("the snapshot is a big-endian bbolt file")
		}
		return fmt.Errorf("page 0 is not a bbolt meta page (magic %#x)", magic)
	}
	if v := binary.LittleEndian.Uint32(m[4:]); v != boltVersion {
		return fmt.Errorf("bbolt file version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if sum := binary.LittleEndian.Uint64(m[56:]); sum != h.Sum64() {
		return fmt.Errorf("meta page checksum %#x, computed %#x", sum, h.Sum64())
	}
	ps := int64(binary.LittleEndian.Uint32(m[8:]))
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return fmt.Errorf("page size %d is not a power of two between 512 and 1 MiB", ps)
	}
	s.ps = ps
	s.root = binary.LittleEndian.Uint64(m[16:])
	s.hwm = binary.LittleEndian.Uint64(m[40:])
	return nil
}

// examine reads every page position that has arrived whole, finishes the
// candidates whose overflow pages have arrived since, and drops the bytes
// no candidate needs any more.
func (s *snapshotScan) examine() {
	ps := uint64(s.ps)
	for (s.next+1)*ps <= uint64(s.total) && s.err == nil {
		if s.abandon.Load() {
			s.stop(errors.New("the scan was stopped"))
			return
		}
		off := int64(s.next*ps) - s.bufStart
		hdr := s.buf[off : off+pageHeaderSize]
		id := binary.LittleEndian.Uint64(hdr)
		flags := binary.LittleEndian.Uint16(hdr[8:])
		if id == s.next && (flags == branchPageFlag || flags == leafPageFlag) {
			count := binary.LittleEndian.Uint16(hdr[10:])
			span := uint64(binary.LittleEndian.Uint32(hdr[12:])) + 1
			switch {
			case span*ps > maxScanSpan:
				s.markUnread(id, span, fmt.Sprintf("it spans %d pages, more than the scan holds back", span))
			case (id+span)*ps <= uint64(s.total):
				s.parse(pendingPage{id, span, flags, count})
			default:
				s.pending = append(s.pending, pendingPage{id, span, flags, count})
			}
		}
		s.next++
	}
	if s.err != nil {
		return
	}
	keep := min(int64(s.next*ps), s.total)
	s.pending = slices.DeleteFunc(s.pending, func(p pendingPage) bool {
		if (p.id+p.span)*ps <= uint64(s.total) {
			s.parse(p)
			return true
		}
		keep = min(keep, int64(p.id*ps))
		return false
	})
	if s.err != nil {
		return
	}
	if drop := keep - s.bufStart; drop > 0 {
		s.buf = s.buf[:copy(s.buf, s.buf[drop:])]
		s.bufStart = keep
	}
}

// parse summarises a candidate page whose bytes have all arrived.
func (s *snapshotScan) parse(p pendingPage) {
	if s.err != nil {
		return
	}
	off := int64(p.id)*s.ps - s.bufStart
	data := s.buf[off : off+int64(p.span)*s.ps]
	// The pages of a bbolt file do not overlap, so reading every
	// candidate reads each byte about once; candidates shaped inside
	// values could make it read each many times over.
	s.work += int64(len(data))
	if s.work > 2*s.total+int64(maxScanSpan) {
		s.stop(fmt.Errorf("candidate pages overlap: %d bytes read for a %d-byte stream", s.work, s.total))
		return
	}
	rec := pageRec{id: p.id, span: p.span}
	var err error
	if p.flags == branchPageFlag {
		rec.kind = kindBranch
		n := len(s.children)
		s.children, err = appendChildren(s.children, data, int(p.count))
		if err != nil {
			s.children = s.children[:n]
		}
		rec.start, rec.end = uint32(n), uint32(len(s.children))
	} else {
		rec.kind = kindLeaf
		s.scratch, err = appendLeaf(s.scratch[:0], data, int(p.count))
		if err == nil {
			rec.chunk, rec.start, rec.end = s.keep(s.scratch)
		}
	}
	if err != nil {
		// Kept as unread, which matters only if it turns out to be
		// reachable.
		s.markUnread(p.id, p.span, err.Error())
		return
	}
	s.addPage(rec)
}

// addPage appends a page record, growing the slice by a quarter at a time
// rather than doubling it: there is one record per candidate page.
func (s *snapshotScan) addPage(rec pageRec) {
	if len(s.pages) == cap(s.pages) {
		s.pages = slices.Grow(s.pages, max(1024, len(s.pages)/4))
	}
	s.pages = append(s.pages, rec)
}

// appendChildren appends a branch page's children to dst. Its keys must
// be laid out as bbolt writes them (see appendLeaf).
func appendChildren(dst []uint64, data []byte, count int) ([]uint64, error) {
	next := uint64(pageHeaderSize + count*pageElementSize)
	if next > uint64(len(data)) {
		return dst, fmt.Errorf("%d branch elements do not fit its %d bytes", count, len(data))
	}
	for i := range count {
		eoff := pageHeaderSize + i*pageElementSize
		e := data[eoff:]
		ks := uint64(eoff) + uint64(binary.LittleEndian.Uint32(e[0:]))
		ksize := uint64(binary.LittleEndian.Uint32(e[4:]))
		if ks != next || ks+ksize > uint64(len(data)) {
			return dst, fmt.Errorf("branch element %d is not where bbolt puts it", i)
		}
		next += ksize
		dst = append(dst, binary.LittleEndian.Uint64(e[8:]))
	}
	return dst, nil
}

// appendLeaf appends the summary of a leaf page's elements to dst.
//
// The elements' keys and values must be laid out as bbolt writes them:
// one after the other, in element order, right after the element table.
// Each byte of the page is then read at most once, so a page shaped by
// someone who wrote a value cannot make the scan keep or hash more than
// the page holds.
func appendLeaf(dst, data []byte, count int) ([]byte, error) {
	next := uint64(pageHeaderSize + count*pageElementSize)
	if next > uint64(len(data)) {
		return dst, fmt.Errorf("%d leaf elements do not fit its %d bytes", count, len(data))
	}
	for i := range count {
		eoff := pageHeaderSize + i*pageElementSize
		e := data[eoff:]
		flags := binary.LittleEndian.Uint32(e[0:])
		pos := uint64(binary.LittleEndian.Uint32(e[4:]))
		ksize := uint64(binary.LittleEndian.Uint32(e[8:]))
		vsize := uint64(binary.LittleEndian.Uint32(e[12:]))
		ks := uint64(eoff) + pos
		if ks != next || ks+ksize+vsize > uint64(len(data)) {
			return dst, fmt.Errorf("element %d is not where bbolt puts it", i)
		}
		next += ksize + vsize
		key := data[ks : ks+ksize]
		val := data[ks+ksize : ks+ksize+vsize]
		switch {
		case flags&bucketLeafFlag != 0:
			if len(val) < bucketHeader {
				return dst, fmt.Errorf("element %d: a bucket header of %d bytes", i, len(val))
			}
			if binary.LittleEndian.Uint64(val) != 0 {
				val = val[:bucketHeader] // not inline: its root page is elsewhere
			}
			dst = append(dst, entryBucket)
			dst = protowire.AppendBytes(dst, key)
			dst = protowire.AppendBytes(dst, val)
		case isRevKey(key):
			k, v, err := keyValue(val, key)
			if err != nil {
				return dst, fmt.Errorf("element %d: %w", i, err)
			}
			// The sub-revision is not kept: etcd refuses a
			// transaction that touches a key twice, so a key has one
			// entry per main revision (Inventory checks it).
			sum := sha256.Sum256(v)
			tag := byte(entryRev)
			if len(key) == 18 {
				tag = entryDel
			}
			dst = append(dst, tag)
			dst = append(dst, key[:8]...)
			dst = protowire.AppendBytes(dst, k)
			dst = append(dst, sum[:]...)
		case len(key) <= smallEntry && len(val) <= smallEntry:
			dst = append(dst, entrySmall)
			dst = protowire.AppendBytes(dst, key)
			dst = protowire.AppendBytes(dst, val)
		default:
			dst = append(dst, entryOther)
		}
	}
	return dst, nil
}

// isRevKey reports whether key has the shape of the key bucket's keys:
// main ‖ '_' ‖ sub, with a trailing 't' for a deletion.
func isRevKey(key []byte) bool {
	return (len(key) == 17 || len(key) == 18 && key[17] == 't') && key[8] == '_'
}

// keyValue returns the key and value of a stored mvccpb.KeyValue (key is
// field 1, mod_revision field 3, value field 5), checking that its
// mod_revision is the revision it is stored under (a deletion stores the
// key alone).
func keyValue(b, revKey []byte) (key, value []byte, err error) {
	var modRev uint64
	var haveKey bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, errors.New("not a stored key-value")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			key, n = protowire.ConsumeBytes(b)
			haveKey = true
		case num == 5 && typ == protowire.BytesType:
			value, n = protowire.ConsumeBytes(b)
		case num == 3 && typ == protowire.VarintType:
			modRev, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, nil, errors.New("not a stored key-value")
		}
		b = b[n:]
	}
	if !haveKey || len(key) == 0 {
		return nil, nil, errors.New("a stored key-value without a key")
	}
	if len(revKey) == 17 && modRev != binary.BigEndian.Uint64(revKey) {
		return nil, nil, fmt.Errorf("a key-value of revision %d stored under revision %d", modRev, binary.BigEndian.Uint64(revKey))
	}
	return key, value, nil
}

// Inventory returns the keyspace at revision rev from the pages reachable
// from the snapshot's root, once the whole stream (etcd's trailer
// included) has been written. An error says why the snapshot could not
// give it.
func (s *snapshotScan) Inventory(rev int64) (catalog.Inventory, error) {
	if s.err != nil {
		return catalog.Inventory{}, s.err
	}
	if s.ps == 0 {
		return catalog.Inventory{}, errors.New("the snapshot ended before its meta page")
	}
	if db := s.total - trailerSize; db != int64(s.hwm)*s.ps {
		return catalog.Inventory{}, fmt.Errorf("the database is %d bytes, its meta page says %d pages of %d", db, s.hwm, s.ps)
	}
	slices.SortFunc(s.pages, func(a, b pageRec) int { return cmp.Compare(a.id, b.id) })

	var keyBucket, metaBucket []byte
	err := s.walk(s.root, 0, func(entries []byte, _ uint64) error {
		return eachEntry(entries, func(tag byte, e []byte, _ int) {
			if tag == entryBucket {
				switch name, val := twoBytes(e); string(name) {
				case "key":
					keyBucket = val
				case "meta":
					metaBucket = val
				}
			}
		})
	})
	if err != nil {
		return catalog.Inventory{}, fmt.Errorf("root bucket: %w", err)
	}
	if keyBucket == nil || metaBucket == nil {
		return catalog.Inventory{}, errors.New("the snapshot has no key or no meta bucket")
	}

	var compacted uint64
	err = s.bucket(metaBucket, func(entries []byte, _ uint64) error {
		return eachEntry(entries, func(tag byte, e []byte, _ int) {
			if tag != entrySmall {
				return
			}
			if k, v := twoBytes(e); (string(k) == "scheduledCompactRev" || string(k) == "finishedCompactRev") && len(v) >= 8 {
				compacted = max(compacted, binary.BigEndian.Uint64(v))
			}
		})
	})
	if err != nil {
		return catalog.Inventory{}, fmt.Errorf("meta bucket: %w", err)
	}
	if compacted > uint64(rev) {
		return catalog.Inventory{}, fmt.Errorf("the keyspace was compacted to revision %d, past revision %d, before the snapshot was taken: %w", compacted, rev, ErrCompactedPast)
	}

	// Every revision at or below rev, by key then revision; the last of
	// each key decides. Each is a reference (chunk << 32 | offset) to its
	// body in the arena: 8 bytes per revision.
	var revs []uint64
	var others int
	err = s.bucket(keyBucket, func(entries []byte, base uint64) error {
		return eachEntry(entries, func(tag byte, e []byte, off int) {
			switch {
			case tag != entryRev && tag != entryDel:
				others++
			case binary.BigEndian.Uint64(e) <= uint64(rev):
				revs = append(revs, base+uint64(off))
			}
		})
	})
	if err == nil && others > 0 {
		err = fmt.Errorf("%d elements are not revisions", others)
	}
	if err != nil {
		return catalog.Inventory{}, fmt.Errorf("key bucket: %w", err)
	}
	slices.SortFunc(revs, func(a, b uint64) int {
		ea, eb := s.body(a), s.body(b)
		if c := bytes.Compare(revKey(ea), revKey(eb)); c != 0 {
			return c
		}
		return bytes.Compare(ea[:8], eb[:8]) // main, big-endian
	})
	b, err := catalog.NewInventoryBuilder(catalog.InventoryVersion)
	if err != nil {
		return catalog.Inventory{}, err
	}
	for i, ref := range revs {
		e := s.body(ref)
		key := revKey(e)
		if i+1 < len(revs) {
			if next := s.body(revs[i+1]); bytes.Equal(key, revKey(next)) {
				if bytes.Equal(e[:8], next[:8]) {
					return catalog.Inventory{}, fmt.Errorf("key bucket: revision %d holds key %q twice", binary.BigEndian.Uint64(e), key)
				}
				continue // a later revision of the same key decides
			}
		}
		if s.chunks[ref>>32][uint32(ref)-1] == entryDel {
			continue // deleted
		}
		if err := b.AddSum(key, revSum(e)); err != nil {
			return catalog.Inventory{}, err
		}
	}
	return b.Inventory(), nil
}

// body returns the revision entry body a reference points to.
func (s *snapshotScan) body(ref uint64) []byte {
	return s.chunks[ref>>32][uint32(ref):]
}

// revKey returns the key of a revision entry's body.
func revKey(e []byte) []byte {
	k, _ := protowire.ConsumeBytes(e[8:])
	return k
}

// revSum returns the value digest of a revision entry's body.
func revSum(e []byte) []byte {
	_, n := protowire.ConsumeBytes(e[8:])
	return e[8+n : 8+n+sha256.Size]
}

// walk calls leaf with the entries of every leaf page reachable from page
// id, and the reference (chunk << 32 | offset) of their start. A reachable
// page must be a page the scan read, within the high-water mark, and
// reached once.
func (s *snapshotScan) walk(id uint64, depth int, leaf func(entries []byte, base uint64) error) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("the tree is deeper than %d levels", maxTreeDepth)
	}
	i, ok := slices.BinarySearchFunc(s.pages, id, func(p pageRec, id uint64) int { return cmp.Compare(p.id, id) })
	if !ok {
		return fmt.Errorf("page %d is reachable but is not a branch or leaf page", id)
	}
	p := &s.pages[i]
	switch {
	case p.id+p.span > s.hwm:
		return fmt.Errorf("page %d (%d pages) is past the high-water page %d", p.id, p.span, s.hwm)
	case p.seen:
		return fmt.Errorf("page %d is reached twice", p.id)
	case p.kind == kindUnread:
		return fmt.Errorf("page %d is reachable and was not read: %s", p.id, s.unread[p.id])
	}
	p.seen = true
	if p.kind == kindLeaf {
		return leaf(s.chunks[p.chunk][p.start:p.end], uint64(p.chunk)<<32|uint64(p.start))
	}
	for _, c := range s.children[p.start:p.end] {
		if err := s.walk(c, depth+1, leaf); err != nil {
			return err
		}
	}
	return nil
}

// bucket calls leaf with the entries of every leaf of a bucket, given its
// value in the parent: a root page, or an inline page (whose summary is
// then kept in the arena like a page's).
func (s *snapshotScan) bucket(val []byte, leaf func(entries []byte, base uint64) error) error {
	if root := binary.LittleEndian.Uint64(val); root != 0 {
		return s.walk(root, 0, leaf)
	}
	page := val[bucketHeader:]
	if len(page) < pageHeaderSize || binary.LittleEndian.Uint16(page[8:]) != leafPageFlag {
		return errors.New("an inline bucket that is not a leaf page")
	}
	entries, err := appendLeaf(nil, page, int(binary.LittleEndian.Uint16(page[10:])))
	if err != nil {
		return fmt.Errorf("inline bucket: %w", err)
	}
	c, start, end := s.keep(entries)
	return leaf(s.chunks[c][start:end], uint64(c)<<32|uint64(start))
}

// eachEntry calls fn with each entry's tag, body, and the body's offset in
// entries.
func eachEntry(entries []byte, fn func(tag byte, body []byte, off int)) error {
	for off := 0; off < len(entries); {
		tag, body := entries[off], entries[off+1:]
		var n int
		switch tag {
		case entryBucket, entrySmall:
			_, a := protowire.ConsumeBytes(body)
			_, b := protowire.ConsumeBytes(body[a:])
			n = a + b
		case entryRev, entryDel:
			_, k := protowire.ConsumeBytes(body[8:])
			n = 8 + k + sha256.Size
		case entryOther:
			n = 0
		}
		fn(tag, body[:n], off+1)
		off += 1 + n
	}
	return nil
}

// twoBytes decodes a bucket or small entry's body: a key and a value.
func twoBytes(e []byte) (k, v []byte) {
	k, n := protowire.ConsumeBytes(e)
	v, _ = protowire.ConsumeBytes(e[n:])
	return k, v
}

// Chunks queued to the scan: scanDepth buffers of scanChunk bytes.
const (
	scanDepth = 16
	scanChunk = 128 << 10
)

// feed runs consume on a goroutine of its own over copies of what write
// is given, in order, so that work on a stream's bytes (the inventory scan,
// the trailer's digest) takes a core beside the compression and encryption
// of the same bytes rather than time on their path. Memory is bounded by
// depth+1 buffers of chunk bytes. write and wait are called from one
// goroutine; stop may be called from any. After stop, write drops what it
// is given, and the goroutine ends having consumed at most the chunks
// already queued.
type feed struct {
	consume  func([]byte)
	queue    chan []byte // a nil buffer asks the goroutine to finish
	free     chan []byte
	chunk    int
	quit     chan struct{}
	done     chan struct{}
	quitOnce sync.Once
	finish   sync.Once
}

func newFeed(depth, chunk int, consume func([]byte)) *feed {
	f := &feed{consume: consume, queue: make(chan []byte, depth), free: make(chan []byte, depth+1), chunk: chunk,
		quit: make(chan struct{}), done: make(chan struct{})}
	for range depth + 1 {
		f.free <- make([]byte, 0, chunk)
	}
	go func() {
		defer close(f.done)
		for {
			select {
			case b := <-f.queue:
				if b == nil {
					return
				}
				f.consume(b)
				f.free <- b[:0]
			case <-f.quit:
				return
			}
		}
	}()
	return f
}

// write copies p to the queue.
func (f *feed) write(p []byte) {
	for len(p) > 0 {
		var b []byte
		select {
		case b = <-f.free:
		case <-f.quit:
			return
		}
		k := min(len(p), f.chunk)
		select {
		case f.queue <- append(b, p[:k]...):
		case <-f.quit:
			return
		}
		p = p[k:]
	}
}

// stop abandons the feed; it does not wait for the goroutine.
func (f *feed) stop() {
	f.quitOnce.Do(func() { close(f.quit) })
}

// wait waits until everything written so far has been consumed and the
// goroutine has ended. It fails if the feed was stopped: then not all of
// it may have been.
func (f *feed) wait() error {
	f.finish.Do(func() {
		select {
		case f.queue <- nil:
		case <-f.quit:
		}
	})
	<-f.done
	select {
	case <-f.quit:
		return errors.New("stopped")
	default:
		return nil
	}
}

// scanFeed runs a snapshotScan on a feed. Memory is bounded by the feed's
// buffers plus what the scan holds.
type scanFeed struct {
	scan snapshotScan
	f    *feed
}

func newScanFeed() *scanFeed {
	f := &scanFeed{}
	f.f = newFeed(scanDepth, scanChunk, func(b []byte) { f.scan.Write(b) })
	return f
}

// write copies p to the scan's queue.
func (f *scanFeed) write(p []byte) { f.f.write(p) }

// stop abandons the scan, which gives up at its next page; it does not
// wait for it.
func (f *scanFeed) stop() {
	f.scan.abandon.Store(true)
	f.f.stop()
}

// inventory waits for the scan to read everything written so far and
// returns its inventory at rev.
func (f *scanFeed) inventory(rev int64) (catalog.Inventory, error) {
	if err := f.f.wait(); err != nil {
		return catalog.Inventory{}, errors.New("the scan was stopped")
	}
	return f.scan.Inventory(rev)
}
