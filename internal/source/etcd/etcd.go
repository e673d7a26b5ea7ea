package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// DefaultDialTimeout bounds connecting to an endpoint and its status call
// when Options.DialTimeout is zero.
const DefaultDialTimeout = 5 * time.Second

// ErrIntegrity is returned when the snapshot stream does not end with a
// valid SHA-256 of the bytes before it: the stream was cut short, or
// corrupted on the way.
var ErrIntegrity = errors.New("etcd snapshot failed its integrity check")

// maxRecvMsgSize bounds one gRPC response on the connections Snapshot
// makes; an inventory page that would exceed it is fetched again with fewer
// keys. It must hold the largest single key-value pair (etcd's default
// request limit is 1.5 MiB).
const maxRecvMsgSize = 32 << 20

// Inventory pages: the first asks for inventoryFirstPage keys; later ones
// for as many as fit inventoryPageBytes at the sizes seen so far, between 1
// and inventoryMaxPage keys.
//
// etcd counts every key from a Range's start to its end to answer it,
// whatever the limit, so pages over an open-ended range cost time
// quadratic in the keyspace (a 2 GiB database took a minute). The read is
// therefore two-level: keys alone, inventoryKeyPage at a time over the open
// range (few requests, small responses), then the values of each such
// span in byte-bounded pages over its closed range.
const (
	inventoryFirstPage = 100
	inventoryMaxPage   = 1000
	inventoryPageBytes = 1 << 20
	inventoryKeyPage   = 10000
)

// recvWindow is the HTTP/2 flow-control window of the snapshot
// connection (its status call, the snapshot stream and the inventory's
// fallback reads): how far the member may send ahead of what lifeboat has
// read. gRPC's default starts at 64 KiB and grows with its estimate of the
// bandwidth-delay product (a static window turns that estimate off), which
// on a fast link stays small, so the member stalled each time compression
// or a digest held the reader, and the two took turns on the cores. 8 MiB
// let them overlap: 0.92-0.95 of the wall time of a 1 GiB backup (paired
// runs against the default). 16 MiB gained nothing more (0.98 against 8
// MiB), and 32 MiB, whose unread frames sit in the Go heap, pushed it
// against backup run's soft memory limit (1.37 of the wall time). Up to 8
// MiB of unread snapshot is held in the heap; backupMemoryLimit counts it.
const recvWindow = 8 << 20

// snapshotPool is the buffer pool of every snapshot connection.
var snapshotPool = &recvPool{}

// Options say which etcd to snapshot and how to reach it.
type Options struct {
	// Endpoints are client URLs (http:// or https://). The snapshot is
	// taken from the first one whose status call succeeds.
	Endpoints []string
	// CAFile verifies the server's certificate (empty: system roots, for
	// https endpoints). CertFile and KeyFile are the client certificate and
	// key, both or neither.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds connecting to each endpoint and asking its
	// status; zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// Now is the clock for the taken-at time; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Stream is an etcd snapshot being received. Read returns the snapshot
// exactly as etcd sends it (the database followed by its 32-byte SHA-256)
// and returns io.EOF only once that digest has been checked and the
// inventory read; any failure is an error instead. Close releases the
// connection and must always be called.
type Stream struct {
	ctx     context.Context
	cli     *clientv3.Client
	cancel  context.CancelFunc
	tr      *trailerReader
	scan    *scanFeed
	log     *slog.Logger
	info    catalog.Etcd
	invFrom string
	err     error
	done    bool
	once    sync.Once
}

// Snapshot connects to the first reachable endpoint, records its status,
// and starts the snapshot stream and the inventory read. Errors name the
// endpoints tried and what failed at each.
func Snapshot(ctx context.Context, opts Options) (*Stream, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd snapshot: no endpoints")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	dial := opts.DialTimeout
	if dial <= 0 {
		dial = DefaultDialTimeout
	}
	tlsCfg, err := tlsConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("etcd snapshot: %w", err)
	}
	var tried []string
	for _, ep := range opts.Endpoints {
		s, err := open(ctx, ep, dial, tlsCfg, now, log)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("etcd snapshot: %w", ctx.Err())
		}
		log.Warn("etcd endpoint unusable", "endpoint", ep, "err", err)
		tried = append(tried, err.Error())
	}
	return nil, fmt.Errorf("etcd snapshot: no endpoint answered: %s", strings.Join(tried, "; "))
}

func open(ctx context.Context, ep string, dial time.Duration, tlsCfg *tls.Config, now func() time.Time, log *slog.Logger) (*Stream, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{ep},
		DialTimeout:        dial,
		TLS:                tlsCfg,
		Logger:             zap.NewNop(),
		MaxCallRecvMsgSize: maxRecvMsgSize,
		Context:            ctx,
		DialOptions: []grpc.DialOption{experimental.WithBufferPool(snapshotPool),
			grpc.WithInitialWindowSize(recvWindow), grpc.WithInitialConnWindowSize(recvWindow)},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: connect: %w", ep, err)
	}
	// takenAt is taken before the revision is read: the snapshot reflects
	// the keyspace at or after this time, never before it, so the RPO
	// measured from it is never understated.
	takenAt := now().UTC()
	sctx, scancel := context.WithTimeout(ctx, dial)
	st, err := cli.Status(sctx, ep)
	scancel()
	if err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("etcd %s: status: no answer within %s (is etcd running and reachable?)", ep, dial)
		}
		return nil, fmt.Errorf("etcd %s: status: %w", ep, err)
	}
	if len(st.Errors) > 0 {
		// Alarms (NOSPACE, CORRUPT) and other member errors: a snapshot of
		// a member in that state is not one to restore from.
		cli.Close()
		return nil, fmt.Errorf("etcd %s: member reports errors or alarms, not snapshotting it: %s", ep, strings.Join(st.Errors, "; "))
	}
	rev := st.Header.Revision
	s := &Stream{
		cli: cli,
		info: catalog.Etcd{
			Endpoint:  ep,
			ClusterID: strconv.FormatUint(st.Header.ClusterId, 16),
			MemberID:  strconv.FormatUint(st.Header.MemberId, 16),
			Revision:  rev,
			DBSize:    st.DbSize,
		},
		log: log,
	}
	sctx, cancel := context.WithCancel(ctx)
	s.ctx, s.cancel = sctx, cancel
	s.info.TakenAt = takenAt
	snap, err := openSnapshot(sctx, cli)
	if err != nil {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("etcd %s: open snapshot stream: %w", ep, err)
	}
	s.tr = newTrailerReader(snap)
	s.scan = newScanFeed()
	log.Info("etcd snapshot started", "endpoint", ep, "revision", rev, "dbSize", st.DbSize,
		"clusterId", s.info.ClusterID, "memberId", s.info.MemberID, "storageVersion", snap.version)
	return s, nil
}

// inventory returns the keyspace inventory at the snapshot's revision once
// the stream has ended verified: from the snapshot's own bytes, or, where
// they cannot give it (docs/format.md §6.0.1), read from the member.
func (s *Stream) inventory() (catalog.Inventory, error) {
	inv, err := s.scan.inventory(s.info.Revision)
	if err == nil {
		s.invFrom = InventoryFromSnapshot
		return inv, nil
	}
	if errors.Is(err, ErrCompactedPast) {
		// The member no longer has revision R either.
		return catalog.Inventory{}, fmt.Errorf("etcd %s: inventory: %w", s.info.Endpoint, err)
	}
	s.log.Warn("etcd inventory: the snapshot's bytes cannot give the keyspace at its revision; reading it from the member",
		"endpoint", s.info.Endpoint, "revision", s.info.Revision, "reason", err)
	inv, err = ReadInventory(s.ctx, s.cli.KV, s.info.Revision, catalog.InventoryVersion)
	if err != nil {
		return catalog.Inventory{}, fmt.Errorf("etcd %s: %w", s.info.Endpoint, err)
	}
	s.invFrom = InventoryFromMember
	return inv, nil
}

// Where a Stream's inventory came from (Stream.InventoryFrom).
const (
	InventoryFromSnapshot = "snapshot"
	InventoryFromMember   = "member"
)

// InventoryFrom says where the inventory came from once Read has returned
// io.EOF: InventoryFromSnapshot, or InventoryFromMember when the snapshot's
// bytes could not give it; "" before then.
func (s *Stream) InventoryFrom() string { return s.invFrom }

// Info returns the snapshot's facts. Endpoint, IDs, revision, database
// size and taken-at time are known from the start; the snapshot digest and
// the inventory once Read has returned io.EOF. complete reports whether
// the stream ended verified.
func (s *Stream) Info() (info catalog.Etcd, complete bool) {
	return s.info, s.done
}

// Read returns snapshot bytes. See Stream.
func (s *Stream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.tr.Read(p)
	if n > 0 {
		s.scan.write(p[:n])
	}
	switch {
	case err == io.EOF:
		inv, ierr := s.inventory()
		if ierr != nil {
			s.err = ierr
			return n, s.err
		}
		s.info.SnapshotSHA256 = s.tr.sum
		s.info.Inventory = inv
		s.done = true
		s.err = io.EOF
	case errors.Is(err, ErrIntegrity):
		s.err = fmt.Errorf("etcd %s: snapshot stream: %w", s.info.Endpoint, err)
	case err != nil:
		s.err = fmt.Errorf("etcd %s: snapshot stream cut short after %d bytes: %w", s.info.Endpoint, s.tr.total, err)
	}
	return n, s.err
}

// StreamSHA256 returns the hex SHA-256 of every byte Read returned
// (the database and etcd's trailer) once Read has returned io.EOF; ""
// before then. It is the same hash the trailer check keeps, so a
// consumer need not hash the stream again.
func (s *Stream) StreamSHA256() string {
	if !s.done {
		return ""
	}
	return s.tr.full
}

// Close stops the stream, the inventory read and the trailer's digest,
// and closes the connection.
func (s *Stream) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.scan.stop()
		s.tr.stop()
		s.cli.Close()
		if !s.done && s.err == nil {
			s.err = errors.New("etcd snapshot: stream closed")
		}
	})
	return nil
}

// ReadInventory reads the inventory of the keyspace at revision rev
// through kv: every key-value pair in key order, in pages of about 1 MiB
// (sized from the pairs seen so far), so memory stays bounded by a page
// whatever the keyspace holds. version is the digest's definition
// (catalog.InventoryVersion, or 0 to compare with an older manifest). It
// fails if rev has been compacted.
func ReadInventory(ctx context.Context, kv clientv3.KV, rev int64, version int) (catalog.Inventory, error) {
	b, err := catalog.NewInventoryBuilder(version)
	if err != nil {
		return catalog.Inventory{}, err
	}
	key, limit := "\x00", int64(inventoryFirstPage)
	var seenKeys, seenBytes int64
	for {
		// The next span: up to inventoryKeyPage keys from key on.
		kresp, err := kv.Get(ctx, key, clientv3.WithFromKey(), clientv3.WithRev(rev), clientv3.WithKeysOnly(), clientv3.WithLimit(inventoryKeyPage))
		if err != nil {
			return catalog.Inventory{}, fmt.Errorf("inventory at revision %d: %w", rev, err)
		}
		if len(kresp.Kvs) == 0 {
			return b.Inventory(), nil
		}
		end := string(kresp.Kvs[len(kresp.Kvs)-1].Key) + "\x00"
		// Its values, in pages over the closed range [key, end).
		from := key
		for {
			resp, err := kv.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(limit))
			if status.Code(err) == codes.ResourceExhausted && limit > 1 {
				limit = max(1, limit/4)
				continue
			}
			if err != nil {
				return catalog.Inventory{}, fmt.Errorf("inventory at revision %d: %w", rev, err)
			}
			for _, p := range resp.Kvs {
				if err := b.Add(p.Key, p.Value); err != nil {
					return catalog.Inventory{}, fmt.Errorf("inventory at revision %d: %w", rev, err)
				}
				seenKeys++
				seenBytes += int64(len(p.Key) + len(p.Value))
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			avg := max(1, seenBytes/seenKeys)
			limit = min(inventoryMaxPage, max(1, inventoryPageBytes/avg))
		}
		if !kresp.More {
			return b.Inventory(), nil
		}
		key = end
	}
}

// tlsConfig builds the client TLS configuration from the files in opts;
// nil when none is given.
func tlsConfig(opts Options) (*tls.Config, error) {
	if opts.CAFile == "" && opts.CertFile == "" && opts.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", opts.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("client certificate: certFile and keyFile go together")
	}
	if opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s (key %s): %w", opts.CertFile, opts.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
