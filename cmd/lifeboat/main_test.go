package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain points the user's config directory (where the default evidence
// signing key lives) at a temporary directory, so tests never touch the
// real one.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lifeboat-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run executes the CLI in process and returns stdout, stderr and the exit
// code main would use.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil && !isReported(err) {
		errb.WriteString("lifeboat: " + err.Error() + "\n")
	}
	return out.String(), errb.String(), exitCode(err)
}

func TestValidateExamples(t *testing.T) {
	out, errs, code := run(t, "validate", "../../schedules", "../../drills")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	for _, want := range []string{"Schedule", "Drill", "control-plane", "objects valid"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestValidateBrokenNamesFileLineField(t *testing.T) {
	_, errs, code := run(t, "validate", "testdata/broken.yaml")
	if code != ExitConfig {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitConfig, errs)
	}
	for _, want := range []string{
		"testdata/broken.yaml:9:", "spec.objectLock.mdoe", `"mode"`, // unknown field, with suggestion
		"testdata/broken.yaml:17:", "spec.cron", // bad cron
		"testdata/broken.yaml:18:", "spec.backupPlan", "missing-plan", // dangling reference
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	out, _, code := run(t, "validate", "-o", "json", "testdata/broken.yaml")
	if code != ExitConfig {
		t.Fatalf("exit %d", code)
	}
	var res validationResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if res.Valid || len(res.Problems) < 3 || res.Problems[0].Line == 0 || res.Problems[0].File == "" {
		t.Fatalf("result %+v", res)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"validate"},
		{"--no-such-flag"},
		{"version", "extra"},
		{"-o", "xml", "version"},
		{"--log-level", "loud", "version"},
	} {
		_, errs, code := run(t, args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitUsage, errs)
		}
	}
}

func TestMissingFile(t *testing.T) {
	_, errs, code := run(t, "validate", "testdata/does-not-exist.yaml")
	if code == ExitOK || !strings.Contains(errs, "does-not-exist.yaml") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "version", "-o", "json")
	if code != ExitOK {
		t.Fatal(code)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.ArtifactFmt != 1 || v.ArtifactAEAD == "" || v.GoVersion == "" {
		t.Fatalf("%+v", v)
	}
	out, _, _ = run(t, "version", "-o", "yaml")
	if !strings.Contains(out, "artifactFormat: 1") {
		t.Fatalf("yaml output:\n%s", out)
	}
}

func TestHelpListsExitCodes(t *testing.T) {
	out, _, code := run(t, "--help")
	if code != ExitOK || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "130") {
		t.Fatalf("help:\n%s", out)
	}
}
