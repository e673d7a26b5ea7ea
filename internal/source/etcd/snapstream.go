package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// snapReader reads an etcd snapshot stream straight from the Maintenance
// gRPC stream: each message's blob is handed to Read as it is, without the
// pipe and goroutine clientv3 puts between them, and messages are decoded
// by snapshotCodec.
type snapReader struct {
	stream  pb.Maintenance_SnapshotClient
	cur     []byte
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
		resp, err := r.stream.Recv()
		if err != nil {
			r.err = err // io.EOF at the end
			continue
		}
		r.cur = resp.Blob
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// snapshotCodec is the protobuf codec of the snapshot stream. gRPC's
// default codec first copies a message that spans several frames into a
// buffer from its global pool, zeroed; this one copies it into a buffer of
// its own, not zeroed (every byte is overwritten by the copy), and decodes
// with the messages' generated methods. Decoding copies the blob out of the
// buffer, so the buffer goes back to the pool at once.
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

func (snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(interface{ Unmarshal([]byte) error })
	if !ok {
		return errors.New("snapshot codec: cannot unmarshal into this message")
	}
	if len(data) == 1 {
		return m.Unmarshal(data[0].ReadOnlyData())
	}
	n := data.Len()
	bp, _ := codecBufs.Get().(*[]byte)
	if bp == nil || cap(*bp) < n {
		b := make([]byte, n)
		bp = &b
	}
	b := (*bp)[:n]
	data.CopyTo(b)
	err := m.Unmarshal(b)
	*bp = b
	codecBufs.Put(bp)
	return err
}
