package etcd

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// snapReader reads an etcd snapshot stream straight from the Maintenance
// gRPC stream: each message's blob is handed to Read as it is, without the
// pipe and goroutine clientv3 puts between them, and messages are decoded
// by snapshotCodec.
type snapReader struct {
	stream  pb.Maintenance_SnapshotClient
	cur     []byte
	blob    []byte // the message cur is in, back to the pool once read
	version string
	err     error
}

// openSnapshot starts the snapshot stream on cli's connection and reads
// its first message, which carries the member's storage version.
func openSnapshot(ctx context.Context, cli *clientv3.Client) (*snapReader, error) {
	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{},
		grpc.ForceCodecV2(snapshotCodec{}), grpc.MaxCallRecvMsgSize(maxRecvMsgSize))
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return &snapReader{stream: stream, cur: first.Blob, version: first.Version}, nil
}

func (r *snapReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		releaseBlob(r.blob)
		r.blob = nil
		resp, err := r.stream.Recv()
		if err != nil {
			r.err = err // io.EOF at the end
			continue
		}
		r.cur, r.blob = resp.Blob, resp.Blob
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// snapshotCodec is the protobuf codec of the snapshot stream. gRPC's
// default codec first joins a message that spans several frames (a 32 KiB
// blob spans three HTTP/2 frames) into a buffer from its global pool,
// zeroed, and then decodes it; this one decodes the message where it lies
// in the frames' buffers and copies the blob once, into a pooled buffer
// (unmarshalSnapshot).
type snapshotCodec struct{}

func (snapshotCodec) Name() string { return "proto" }

func (snapshotCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(interface{ Marshal() ([]byte, error) })
	if !ok {
		return nil, fmt.Errorf("snapshot codec: cannot marshal %T", v)
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

// Unmarshal decodes the one message the stream receives, a
// SnapshotResponse.
func (snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	resp, ok := v.(*pb.SnapshotResponse)
	if !ok {
		return fmt.Errorf("snapshot codec: cannot unmarshal %T", v)
	}
	return unmarshalSnapshot(data, resp)
}

// blobs pools the buffers snapshot blobs are decoded into: a backup then
// allocates no garbage per message (a 2 GiB snapshot is 64,000 messages of
// 32 KiB), which keeps the collector idle and the heap small.
var blobs sync.Pool

func releaseBlob(b []byte) {
	if cap(b) > 0 {
		blobs.Put(&b)
	}
}

// unmarshalSnapshot decodes a SnapshotResponse (header 1, remaining_bytes
// 2, blob 3, version 4) from data, which may split it anywhere; the blob
// goes into a pooled buffer. Other fields are skipped.
func unmarshalSnapshot(data mem.BufferSlice, resp *pb.SnapshotResponse) error {
	*resp = pb.SnapshotResponse{}
	c := wireCursor{bufs: data, left: data.Len()}
	for c.left > 0 {
		tag, err := c.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
			return fmt.Errorf("snapshot codec: invalid field number %d", num)
		}
		switch typ {
		case protowire.VarintType:
			v, err := c.varint()
			if err != nil {
				return err
			}
			if num == 2 {
				resp.RemainingBytes = v
			}
		case protowire.BytesType:
			l, err := c.varint()
			if err != nil {
				return err
			}
			if l > uint64(c.left) {
				return fmt.Errorf("snapshot codec: field %d of %d bytes, %d left: %w", num, l, c.left, io.ErrUnexpectedEOF)
			}
			switch num {
			case 3:
				var dst []byte
				if p, ok := blobs.Get().(*[]byte); ok && cap(*p) >= int(l) {
					dst = (*p)[:0]
				} else {
					dst = make([]byte, 0, l)
				}
				releaseBlob(resp.Blob) // a repeated field: the last one counts
				resp.Blob = c.take(dst, int(l))
			case 4:
				resp.Version = string(c.take(nil, int(l)))
			default:
				c.skip(int(l))
			}
		case protowire.Fixed32Type, protowire.Fixed64Type:
			n := 4
			if typ == protowire.Fixed64Type {
				n = 8
			}
			if n > c.left {
				return fmt.Errorf("snapshot codec: field %d cut short: %w", num, io.ErrUnexpectedEOF)
			}
			c.skip(n)
		default:
			return fmt.Errorf("snapshot codec: field %d has wire type %d, which a SnapshotResponse does not use", num, typ)
		}
	}
	return nil
}

// wireCursor reads protobuf wire data that lies across several buffers,
// without joining them first.
type wireCursor struct {
	bufs mem.BufferSlice
	i    int    // next buffer
	cur  []byte // what is left of the current one
	left int    // bytes left in all
}

// fill makes cur non-empty unless everything has been read.
func (c *wireCursor) fill() {
	for len(c.cur) == 0 && c.i < len(c.bufs) {
		c.cur = c.bufs[c.i].ReadOnlyData()
		c.i++
	}
}

// varint reads one varint (a tag, a length, a value).
func (c *wireCursor) varint() (uint64, error) {
	c.fill()
	b := c.cur
	if len(b) < binary.MaxVarintLen64 && len(b) < c.left {
		// It may run into the next buffers: read it from a copy.
		var tmp [binary.MaxVarintLen64]byte
		k, j, rest := 0, c.i, c.cur
		for k < len(tmp) {
			for len(rest) == 0 && j < len(c.bufs) {
				rest = c.bufs[j].ReadOnlyData()
				j++
			}
			if len(rest) == 0 {
				break
			}
			m := copy(tmp[k:], rest)
			k, rest = k+m, rest[m:]
		}
		b = tmp[:k]
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, fmt.Errorf("snapshot codec: %w", protowire.ParseError(n))
	}
	c.skip(n)
	return v, nil
}

// take appends the next n bytes to dst; the caller checked that n are
// left.
func (c *wireCursor) take(dst []byte, n int) []byte {
	for n > 0 {
		c.fill()
		k := min(n, len(c.cur))
		dst = append(dst, c.cur[:k]...)
		c.cur, c.left, n = c.cur[k:], c.left-k, n-k
	}
	return dst
}

// skip passes over the next n bytes; the caller checked that n are left.
func (c *wireCursor) skip(n int) {
	for n > 0 {
		c.fill()
		k := min(n, len(c.cur))
		c.cur, c.left, n = c.cur[k:], c.left-k, n-k
	}
}
