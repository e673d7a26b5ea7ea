package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// app holds what every command shares: the global flags and the logger.
// It is built once per invocation and passed down; there is no global
// state.
type app struct {
	stdout, stderr io.Writer
	configPaths    []string
	logLevel       string
	logFormat      string
	output         string
	logger         *slog.Logger
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "lifeboat",
		Short: "Backups, key rotation and disaster-recovery drills for Kubernetes clusters that hold PHI",
		Long: `lifeboat backs up a Kubernetes cluster (etcd, manifests, policies, volumes,
Vault keys), encrypts every artifact client-side and writes it to a store that
cannot overwrite or delete it before its retention ends, rotates the keys
that protect the backups, and runs drills that restore a backup into a
scratch cluster and measure RTO and RPO against targets.

` + exitCodesHelp,
		Example: `  # the whole story on this machine: back up a seeded cluster, drill the restore
  lifeboat demo

  # check configuration files before deploying them
  lifeboat validate schedules/ drills/

  # back up, list, verify, and drill a restore
  lifeboat --config lifeboat.yaml backup run control-plane
  lifeboat --config lifeboat.yaml backup list
  lifeboat --config lifeboat.yaml backup verify control-plane-20261125T020000Z-7f3a --read-data
  lifeboat --config lifeboat.yaml drill run control-plane`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringArrayVar(&a.configPaths, "config", nil, "configuration file or directory (repeatable); its objects are loaded with every command")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json (logs go to stderr)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml (and junit for drill run)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(newVersionCommand(a), newValidateCommand(a), newStoreCommand(a), newBackupCommand(a), newKeysCommand(a))
	root.AddCommand(newEvidenceCommands(a)...)
	root.AddCommand(newDrillCommand(a), newDemoCommand(a), newServeCommand(a), newRestoreCommand(a), newAuditCommand(a))
	return root
}

// setup checks the global flags and builds the logger.
func (a *app) setup() error {
	var level slog.Level
	switch strings.ToLower(a.logLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text":
		a.logger = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.logger = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return usageError{fmt.Errorf("--log-format %q: want text or json", a.logFormat)}
	}
	switch a.output {
	case "table", "json", "yaml", "junit":
	default:
		return usageError{fmt.Errorf("--output %q: want table, json or yaml (or junit, for drill run)", a.output)}
	}
	return nil
}

// args wraps a cobra argument validator so its errors are usage errors.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// env is the wiring environment of the loaded configuration: this
// process's logger, environment and binary path.
func (a *app) env(set *config.Set) *wire.Env {
	exe, _ := os.Executable()
	return &wire.Env{Set: set, Logger: a.logger, Getenv: os.Getenv, Executable: exe}
}
