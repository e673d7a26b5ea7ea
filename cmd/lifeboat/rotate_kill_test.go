package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// Helper mode: the test binary re-executed as the lifeboat CLI. These
// variables are read only here, in a test file; lifeboat itself reads
// none of them.
const (
	// helperEnv holds the CLI arguments, separated by US (0x1f).
	helperEnv = "LIFEBOAT_TEST_HELPER_ARGS"
	// helperPauseEnv is "N:FILE[:untilcancel]": after the Nth "backup
	// key object verified" log line, create FILE and block the run, for
	// good (the parent then kills the process) or, with untilcancel,
	// until SIGINT or SIGTERM has cancelled the command's context. This is
	// the deterministic point inside a rewrap that the kill and interrupt
	// tests need; it works through the log writer the CLI is given, so
	// nothing in lifeboat knows about it.
	helperPauseEnv = "LIFEBOAT_TEST_HELPER_PAUSE"
)

// TestCLIHelperProcess is not a test: in helper mode it runs the CLI with
// the arguments in LIFEBOAT_TEST_HELPER_ARGS and exits with its exit
// code; otherwise it returns at once.
func TestCLIHelperProcess(t *testing.T) {
	argv, ok := os.LookupEnv(helperEnv)
	if !ok {
		return
	}
	// As main does: SIGINT and SIGTERM cancel the command's context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var stderr io.Writer = os.Stderr
	if p := os.Getenv(helperPauseEnv); p != "" {
		parts := strings.Split(p, ":")
		after, err := strconv.Atoi(parts[0])
		if err != nil || len(parts) < 2 || len(parts) > 3 || parts[1] == "" || len(parts) == 3 && parts[2] != "untilcancel" {
			fmt.Fprintf(os.Stderr, "bad %s %q\n", helperPauseEnv, p)
			os.Exit(99)
		}
		pw := &pausingWriter{w: os.Stderr, match: []byte(`msg="backup key object verified"`), after: after, file: parts[1]}
		if len(parts) == 3 {
			pw.until = ctx.Done()
		}
		stderr = pw
	}
	cmd := newRootCommand(os.Stdout, stderr)
	cmd.SetArgs(strings.Split(argv, "\x1f"))
	err := cmd.ExecuteContext(ctx)
	if err != nil && !isReported(err) {
		fmt.Fprintln(os.Stderr, "lifeboat: "+err.Error())
	}
	os.Exit(exitCode(err))
}

// pausingWriter passes log lines through and, on the after-th line
// containing match, creates file and returns only once until is closed
// (never, when until is nil).
type pausingWriter struct {
	w     io.Writer
	match []byte
	after int
	file  string
	until <-chan struct{}

	mu sync.Mutex
	n  int
}

func (p *pausingWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := p.w.Write(b)
	if bytes.Contains(b, p.match) {
		p.n++
		if p.n == p.after {
			os.WriteFile(p.file, []byte("paused\n"), 0o600)
			<-p.until // nil: hold the run here until SIGKILL
		}
	}
	return n, err
}

// rotateSetup is a store, a local keyring and a plan with one cheap
// source (the API server's EncryptionConfiguration file), plus a
// RotationPolicy that retires old versions after a verified rewrap.
type rotateSetup struct {
	dir, config, storeRoot, keyring, signingKey string
}

func newRotateSetup(t *testing.T) rotateSetup {
	t.Helper()
	s := newRotateSetupWith(t, "")
	if _, errs, code := run(t, "keys", "init", "--keyring", s.keyring, "--key", "clinic-kek"); code != ExitOK {
		t.Fatalf("keys init: %s", errs)
	}
	return s
}

// newRotateSetupWith is newRotateSetup with the KeyProvider named "local"
// given by its spec (flow YAML); "" means a local keyring, not created.
func newRotateSetupWith(t *testing.T, kpSpec string) rotateSetup {
	t.Helper()
	dir := t.TempDir()
	s := rotateSetup{dir: dir, config: filepath.Join(dir, "lifeboat.yaml"), storeRoot: filepath.Join(dir, "store"),
		keyring: filepath.Join(dir, "keyring.json"), signingKey: filepath.Join(dir, "signing.pem")}
	if kpSpec == "" {
		kpSpec = "{type: local, keyring: " + strconv.Quote(s.keyring) + "}"
	}
	cfg, enc := testConfigHead(t, dir, s.storeRoot, kpSpec)
	cfg += fmt.Sprintf(`---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: clinic}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - encryptionConfig: {file: %s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: RotationPolicy
metadata: {name: quarterly}
spec: {keyProvider: local, retireOldVersions: afterVerifiedRewrap}
`, strconv.Quote(enc))
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// addPlan appends objects (flow YAML, after a "---") to the setup's
// configuration file.
func (s rotateSetup) addPlan(t *testing.T, objects string) {
	t.Helper()
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, append(cfg, "---\n"+objects...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// backupRun takes one backup of plan with `backup run -o json` and returns
// its manifest.
func (s rotateSetup) backupRun(t *testing.T, plan string) catalog.Manifest {
	t.Helper()
	out, errs, code := run(t, "--config", s.config, "-o", "json", "backup", "run", plan, "--signing-key", s.signingKey)
	if code != ExitOK {
		t.Fatalf("backup run %s: exit %d\n%s\n%s", plan, code, out, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// backups takes n real backups (each an encrypted artifact, a key object
// and a manifest) and returns their IDs.
func (s rotateSetup) backups(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		out, errs, code := run(t, "--config", s.config, "--log-level", "error", "backup", "run", "clinic", "--signing-key", s.signingKey)
		if code != ExitOK {
			t.Fatalf("backup run: exit %d\n%s\n%s", code, out, errs)
		}
	}
	st := s.store(t, true)
	ms, err := catalog.List(context.Background(), st, catalog.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		ids = append(ids, m.Backup)
	}
	if len(ids) != n {
		t.Fatalf("%d backups committed, want %d", len(ids), n)
	}
	return ids
}

func (s rotateSetup) store(t *testing.T, readOnly bool) store.Store {
	t.Helper()
	st, err := fs.Open(context.Background(), fs.Options{Root: s.storeRoot, ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (s rotateSetup) versionStates(t *testing.T) map[string]keys.VersionState {
	t.Helper()
	k, err := local.Open(context.Background(), local.Options{Path: s.keyring})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := k.Versions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]keys.VersionState{}
	for _, v := range vs {
		out[v.Ref.Version] = v.State
	}
	return out
}

// keyObjectsUnder counts the backups among ids with a key object under
// version v of the keyring's key.
func (s rotateSetup) keyObjectsUnder(t *testing.T, ids []string, v string) int {
	t.Helper()
	st := s.store(t, true)
	name := envelope.KeyObjectName(keys.Ref{Provider: local.ProviderType, Key: "clinic-kek", Version: v})
	n := 0
	for _, id := range ids {
		_, err := st.Stat(context.Background(), catalog.KeysPrefix(id)+name)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, store.ErrNotFound):
			t.Fatal(err)
		}
	}
	return n
}

// rotationRecords returns the rotation records in the store's evidence
// log, after verifying the whole log.
func (s rotateSetup) rotationRecords(t *testing.T) []evidence.Record {
	t.Helper()
	return s.records(t, evidence.KindRotation)
}

// records returns the records of kind in the store's evidence log, after
// verifying the whole log.
func (s rotateSetup) records(t *testing.T, kind string) []evidence.Record {
	t.Helper()
	ctx := context.Background()
	st := s.store(t, true)
	if _, err := evidence.NewLog(st, nil, nil).Verify(ctx); err != nil {
		t.Fatalf("evidence log does not verify: %v", err)
	}
	var out []evidence.Record
	for info, err := range st.List(ctx, "evidence/") {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(info.Key, "evidence/seq/") || !strings.Contains(info.Key, "-"+kind+"-") {
			continue
		}
		rc, err := st.Get(ctx, info.Key, store.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r, err := evidence.ParseRecord(data)
		if err != nil {
			t.Fatalf("%s: %v", info.Key, err)
		}
		out = append(out, r)
	}
	return out
}

// TestKeysRotateKill9: `keys rotate` over 50 real backups, in its own
// process, is SIGKILLed after exactly 20 backups are rewrapped and
// verified under version 2. Version 1 is still enabled; no rotation
// record exists (nothing claims success). The rerun with --no-rotate
// verifies the 20, rewraps the other 30, and only then retires version 1;
// every backup's artifact then decrypts with its data key unwrapped from
// the version 2 key object.
func TestKeysRotateKill9(t *testing.T) {
	const total, killAfter = 50, 20
	s := newRotateSetup(t)
	ids := s.backups(t, total)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	child := startPausedRotate(t, ctx, s, fmt.Sprintf("%d:%s", killAfter, filepath.Join(s.dir, "paused")))
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-child.exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL\n%s", err, child.out.String())
	}

	// Mid-rewrap: version 2 exists and is primary, 20 of 50 backups have
	// their version 2 key object, version 1 is untouched.
	st := s.versionStates(t)
	if st["1"] != keys.StateEnabled || st["2"] != keys.StateEnabled {
		t.Fatalf("after the kill: versions %v, want 1 and 2 enabled", st)
	}
	if n := s.keyObjectsUnder(t, ids, "2"); n != killAfter {
		t.Fatalf("after the kill: %d backups have a version 2 key object, want %d (killed mid-rewrap)", n, killAfter)
	}
	if n := s.keyObjectsUnder(t, ids, "1"); n != total {
		t.Fatalf("after the kill: %d backups have their version 1 key object, want %d", n, total)
	}
	if recs := s.rotationRecords(t); len(recs) != 0 {
		t.Fatalf("a killed run left rotation records: %+v", recs)
	}

	// Rerun to completion.
	outs, errs, code := run(t, "--config", s.config, "-o", "json", "keys", "rotate", "quarterly", "--no-rotate", "--signing-key", s.signingKey)
	if code != ExitOK {
		t.Fatalf("rerun: exit %d\n%s\n%s", code, outs, errs)
	}
	if st := s.versionStates(t); st["1"] != keys.StateRetired || st["2"] != keys.StateEnabled {
		t.Fatalf("after the rerun: versions %v, want 1 retired and 2 enabled", st)
	}
	if n := s.keyObjectsUnder(t, ids, "2"); n != total {
		t.Fatalf("after the rerun: %d of %d backups under version 2", n, total)
	}
	recs := s.rotationRecords(t)
	if len(recs) != 1 {
		t.Fatalf("rotation records after the rerun: %d, want 1", len(recs))
	}
	r := recs[0]
	c := r.Subject["counts"].(map[string]any)
	if r.Outcome != evidence.OutcomeSuccess || c["rewrapped"] != int64(total-killAfter) || c["alreadyDone"] != int64(killAfter) ||
		c["verified"] != int64(total) || c["failed"] != int64(0) {
		t.Fatalf("rerun record: outcome %s counts %v", r.Outcome, c)
	}
	if ret := r.Subject["retirement"].(map[string]any)["retired"].([]any); len(ret) != 1 || ret[0] != "1" {
		t.Fatalf("rerun record: retired %v", ret)
	}

	// Every backup decrypts, version 1 being retired.
	k, err := local.Open(context.Background(), local.Options{Path: s.keyring})
	if err != nil {
		t.Fatal(err)
	}
	sto := s.store(t, true)
	for _, id := range ids {
		res, err := catalog.Verify(context.Background(), sto, id, true, k)
		if err != nil {
			t.Fatalf("backup %s does not decrypt after the rerun: %v", id, err)
		}
		if len(res.Artifacts) == 0 {
			t.Fatalf("backup %s: no artifacts verified", id)
		}
	}
}

// pausedChild is `keys rotate quarterly` running in a child process,
// paused at the point helperPauseEnv names.
type pausedChild struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan error
}

// startPausedRotate starts `keys rotate quarterly` in a child process with
// helperPauseEnv set to pause ("N:FILE[:untilcancel]") and returns once it has
// paused (FILE exists).
func startPausedRotate(t *testing.T, ctx context.Context, s rotateSetup, pause string) pausedChild {
	t.Helper()
	paused := strings.Split(pause, ":")[1]
	c := pausedChild{out: &bytes.Buffer{}, exited: make(chan error, 1)}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCLIHelperProcess$", "-test.count=1")
	c.cmd.Env = append(os.Environ(),
		// One backup at a time, so that the pause point is exact.
		helperEnv+"="+strings.Join([]string{"--config", s.config, "keys", "rotate", "quarterly", "--signing-key", s.signingKey, "--concurrency", "1"}, "\x1f"),
		helperPauseEnv+"="+pause)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-c.exited:
			t.Fatalf("keys rotate exited (%v) before the pause point:\n%s", err, c.out.String())
		case <-ctx.Done():
			c.cmd.Process.Kill()
			t.Fatalf("keys rotate never reached the pause point:\n%s", c.out.String())
		case <-tick.C:
			if _, err := os.Stat(paused); err == nil {
				return c
			}
		}
	}
}

// TestKeysRotateInterrupted: SIGINT after 10 of 30 backups are rewrapped
// stops the run with exit 130; its rotation record says partial with the
// 10 verified, retires nothing, and the rerun completes with success.
func TestKeysRotateInterrupted(t *testing.T) {
	const total, stopAfter = 30, 10
	s := newRotateSetup(t)
	ids := s.backups(t, total)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	child := startPausedRotate(t, ctx, s, fmt.Sprintf("%d:%s:untilcancel", stopAfter, filepath.Join(s.dir, "paused")))
	if err := child.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := <-child.exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("child ended with %v, want exit %d\n%s", err, ExitInterrupted, child.out.String())
	}
	if st := s.versionStates(t); st["1"] != keys.StateEnabled {
		t.Fatalf("versions %v: version 1 retired by an interrupted run", st)
	}
	recs := s.rotationRecords(t)
	if len(recs) != 1 {
		t.Fatalf("%d rotation records after the interrupt, want 1\n%s", len(recs), child.out.String())
	}
	r := recs[0]
	c := r.Subject["counts"].(map[string]any)
	if r.Outcome != evidence.OutcomePartial || c["verified"] != int64(stopAfter) || c["failed"] != int64(0) ||
		!strings.Contains(r.Subject["error"].(string), "context canceled") {
		t.Fatalf("interrupted run record: outcome %s counts %v error %v", r.Outcome, c, r.Subject["error"])
	}
	if w := r.Subject["retirement"].(map[string]any)["withheld"]; w != "the run stopped early" {
		t.Fatalf("retirement withheld %v", w)
	}

	outs, errs, code := run(t, "--config", s.config, "keys", "rotate", "quarterly", "--no-rotate", "--signing-key", s.signingKey)
	if code != ExitOK {
		t.Fatalf("rerun: exit %d\n%s\n%s", code, outs, errs)
	}
	recs = s.rotationRecords(t)
	if len(recs) != 2 || recs[1].Outcome != evidence.OutcomeSuccess {
		t.Fatalf("records after the rerun: %+v", recs)
	}
	if st := s.versionStates(t); st["1"] != keys.StateRetired {
		t.Fatalf("versions %v after the rerun", st)
	}
	if n := s.keyObjectsUnder(t, ids, "2"); n != total {
		t.Fatalf("%d of %d backups under version 2", n, total)
	}
}
