package etcdtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ProxyOptions shape the traffic from etcd back to the client.
type ProxyOptions struct {
	// BytesPerSecond, when positive, limits the rate at which etcd's
	// responses reach the client, so a snapshot takes long enough to
	// interrupt.
	BytesPerSecond int64
	// CutAfter, when positive, closes every connection once this many
	// bytes in total have gone from etcd to the client, and refuses new
	// connections from then on: a snapshot stream cut short.
	CutAfter int64
}

// Proxy forwards TCP connections from 127.0.0.1 to an etcd.
type Proxy struct {
	// Endpoint is the proxy's URL, to give clients instead of etcd's.
	Endpoint string
	ln       net.Listener
	target   string
	opts     ProxyOptions
	sent     atomic.Int64
	rate     atomic.Int64
	cut      atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
}

// NewProxy starts a proxy to the etcd at endpoint (http://host:port) and
// stops it when the test ends.
func NewProxy(t testing.TB, endpoint string, opts ProxyOptions) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: proxy: %v", err)
	}
	p := &Proxy{Endpoint: "http://" + ln.Addr().String(), ln: ln, target: strings.TrimPrefix(endpoint, "http://"), opts: opts}
	p.rate.Store(opts.BytesPerSecond)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// SetRate changes BytesPerSecond for the bytes still to come; zero
// removes the limit.
func (p *Proxy) SetRate(bytesPerSecond int64) { p.rate.Store(bytesPerSecond) }

// Sent returns the number of bytes that have gone from etcd to clients.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.closeAll()
	p.wg.Wait()
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(s, c); s.Close() }()
		go func() { defer p.wg.Done(); p.back(c, s); c.Close() }()
	}
}

// back copies etcd's bytes to the client, throttled and cut as asked.
func (p *Proxy) back(c, s net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if cut := p.opts.CutAfter; cut > 0 {
				before := p.sent.Load()
				if before+int64(n) >= cut {
					c.Write(buf[:max(0, cut-before)])
					p.sent.Add(int64(n))
					p.cut.Store(true)
					p.closeAll()
					return
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			p.sent.Add(int64(n))
			if bps := p.rate.Load(); bps > 0 {
				time.Sleep(time.Duration(float64(n) / float64(bps) * float64(time.Second)))
			}
		}
		if err != nil {
			return
		}
	}
}

// Client returns a client for endpoint, closed when the test ends.
func Client(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Fill puts n keys named <prefix><i> with random values of size bytes
// (incompressible, so a snapshot's size follows them), in transactions of
// up to 1 MiB.
func Fill(t testing.TB, ctx context.Context, cli *clientv3.Client, prefix string, n, size int) {
	t.Helper()
	perTxn := max(1, min(128, (1<<20)/max(1, size)))
	for i := 0; i < n; i += perTxn {
		var ops []clientv3.Op
		for j := i; j < min(n, i+perTxn); j++ {
			v := make([]byte, size)
			rand.Read(v)
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%08d", prefix, j), string(v)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("etcdtest: fill: %v", err)
		}
	}
}
