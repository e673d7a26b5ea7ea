package main

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
)

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

type versionInfo struct {
	Version       string `json:"version"`
	Commit        string `json:"commit,omitempty"`
	CommitTime    string `json:"commitTime,omitempty"`
	Modified      bool   `json:"modified,omitempty"`
	GoVersion     string `json:"goVersion"`
	Platform      string `json:"platform"`
	FIPS140       string `json:"fips140"`
	ArtifactFmt   int    `json:"artifactFormat"`
	ArtifactAEAD  string `json:"artifactAEAD"`
	ConfigVersion string `json:"configAPIVersion"`
}

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, build and format information",
		Example: "  lifeboat version\n  lifeboat version -o json",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{
				Version: version, GoVersion: runtime.Version(),
				Platform: runtime.GOOS + "/" + runtime.GOARCH, FIPS140: "off",
				ArtifactFmt: envelope.FormatVersion, ArtifactAEAD: envelope.AEADName,
				ConfigVersion: config.APIVersion,
			}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						v.Commit = s.Value
					case "vcs.time":
						v.CommitTime = s.Value
					case "vcs.modified":
						v.Modified = s.Value == "true"
					}
				}
			}
			v.FIPS140 = fipsMode()
			t := table{header: []string{"FIELD", "VALUE"}, rows: [][]string{
				{"version", v.Version}, {"commit", v.Commit}, {"go", v.GoVersion}, {"platform", v.Platform},
				{"fips140", v.FIPS140}, {"artifact format", "v1 " + v.ArtifactAEAD}, {"config API", v.ConfigVersion},
			}}
			return a.render(cmd.OutOrStdout(), v, t)
		},
	}
}
