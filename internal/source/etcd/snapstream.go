package etcd

import (
	"context"
	"fmt"
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
// default codec first copies a message that spans several frames into a
// buffer from its global pool, zeroed; this one copies it into a buffer of
// its own, not zeroed (every byte is overwritten by the copy), and decodes
// the blob into a pooled buffer (unmarshalSnapshot), so the copy buffer
// goes back to the pool at once.
type snapshotCodec struct{}

var codecBufs sync.Pool

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
// 2, blob 3, version 4) from data; the blob goes into a pooled buffer.
func unmarshalSnapshot(data mem.BufferSlice, resp *pb.SnapshotResponse) error {
	var b []byte
	var bp *[]byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		bp, _ = codecBufs.Get().(*[]byte)
		if bp == nil || cap(*bp) < data.Len() {
			nb := make([]byte, data.Len())
			bp = &nb
		}
		buf := (*bp)[:data.Len()]
		data.CopyTo(buf)
		b = buf
		defer func() { *bp = buf; codecBufs.Put(bp) }()
	}
	*resp = pb.SnapshotResponse{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 2 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			resp.RemainingBytes = v
		case num == 3 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			var dst []byte
			if p, ok := blobs.Get().(*[]byte); ok && cap(*p) >= len(v) {
				dst = (*p)[:0]
			}
			resp.Blob = append(dst, v...)
		case num == 4 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			resp.Version = string(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}
