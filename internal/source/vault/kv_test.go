package vault

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeKV serves a KV version 2 mount "secret" holding ehr/a and the
// secrets of data (path under the mount → answer body, "" for 404), listed
// under ehr/.
func fakeKV(t *testing.T, data map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/v1/")
		switch {
		case p == "sys/internal/ui/mounts/secret/ehr":
			w.Write([]byte(`{"data":{"path":"secret/","type":"kv","options":{"version":"2"}}}`))
		case p == "secret/metadata/ehr" && r.Method == http.MethodGet && r.URL.Query().Get("list") == "":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errors":[]}`))
		case strings.HasPrefix(p, "secret/metadata/ehr"):
			var keys []string
			for k := range data {
				keys = append(keys, `"`+strings.TrimPrefix(k, "ehr/")+`"`)
			}
			w.Write([]byte(`{"data":{"keys":[` + strings.Join(keys, ",") + `]}}`))
		case strings.HasPrefix(p, "secret/data/"):
			body, ok := data[strings.TrimPrefix(p, "secret/data/")]
			if !ok || body == "" {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"errors":[]}`))
				return
			}
			w.Write([]byte(body))
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func secretBody(value string) string {
	return `{"data":{"data":{"value":"` + value + `"},"metadata":{"version":1,"created_time":"2026-11-20T08:01:02Z"}}}`
}

// TestKVLogsNoSecretPaths backs up a path with a secret and one that
// vanishes between list and read: the logs name the plan's path and
// counts, never a secret's path or value.
func TestKVLogsNoSecretPaths(t *testing.T) {
	srv := fakeKV(t, map[string]string{"ehr/patient-4711": secretBody("value-a"), "ehr/patient-0815-gone": ""})
	var logs bytes.Buffer
	c, err := New(Options{Address: srv.URL, Token: "t", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	got, err := c.KV(context.Background(), []string{"secret/ehr"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Secrets != 1 {
		t.Errorf("kv %+v", got)
	}
	if !strings.Contains(out.String(), "patient-4711") {
		t.Errorf("artifact %s", out.String())
	}
	l := logs.String()
	for _, s := range []string{"patient-4711", "patient-0815", "value-a"} {
		if strings.Contains(l, s) {
			t.Errorf("logs hold %q:\n%s", s, l)
		}
	}
	if !strings.Contains(l, `"path":"secret/ehr"`) || !strings.Contains(l, `"vanished":1`) {
		t.Errorf("logs do not count per path:\n%s", l)
	}
}

// TestKVErrorHoldsNoValue fails on a malformed answer for a secret: the
// error names the secret's path but quotes nothing of the answer.
func TestKVErrorHoldsNoValue(t *testing.T) {
	for name, body := range map[string]string{
		"syntax":  `{"data":{"data":{"value":Zq-secret-value},"metadata":{"version":1}}}`,
		"type":    `{"data":{"data":{"value":"x"},"metadata":{"version":12345.678}}}`,
		"cut off": `{"data":{"data":{"value":"Zq-secret-val`,
	} {
		srv := fakeKV(t, map[string]string{"ehr/patient-4711": body})
		c, err := New(Options{Address: srv.URL, Token: "t"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.KV(context.Background(), []string{"secret/ehr"}, &bytes.Buffer{})
		t.Logf("%s: %v", name, err)
		if err == nil || !strings.Contains(err.Error(), "read secret "+SecretRef("secret/ehr/patient-4711")+": decode the answer") || strings.Contains(err.Error(), "patient-4711") {
			t.Fatalf("%s: err %v", name, err)
		}
		for _, s := range []string{"Zq", "'Z'", "12345", "secret-val"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: err %q holds %q", name, err, s)
			}
		}
	}
}

// TestEncryptOverHTTP2 encrypts against a TLS server speaking HTTP/2, as
// Vault's TLS listener does: the answer's body is read before the
// request's context ends.
func TestEncryptOverHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 || r.Method != http.MethodPut || r.URL.Path != "/v1/transit/encrypt/k" {
			t.Errorf("%s %s %s", r.Proto, r.Method, r.URL)
		}
		w.Write([]byte(`{"data":{"ciphertext":"vault:v1:` + strings.Repeat("QUJD", 4096) + `"}}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c, err := New(Options{Address: srv.URL, Token: "t", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Encrypt(context.Background(), c.c, "transit", "k", []byte("canary"), "")
	if err != nil || !strings.HasPrefix(ct, "vault:v1:QUJD") {
		t.Fatalf("ciphertext %.20q, err %v", ct, err)
	}
}
