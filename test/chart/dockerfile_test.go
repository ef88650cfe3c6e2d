package chart

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// parseDockerfile parses the Dockerfile with BuildKit's own parser and the
// lint rules BuildKit applies while parsing; every warning fails the test.
func parseDockerfile(t *testing.T) []instructions.Stage {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(readRepoFile(t, "Dockerfile")))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile line %d: %s", w.Location.Start.Line, w.Short)
	}
	lint := linter.New(&linter.Config{ExperimentalAll: true, Warn: func(rule, _, url, msg string, loc []parser.Range) {
		t.Errorf("Dockerfile lint %s at line %d: %s (%s)", rule, loc[0].Start.Line, msg, url)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("want a build stage and a final stage, got %d stages", len(stages))
	}
	build, final := stages[0], stages[1]

	// Pinned by an exact Go release tag, running on the build platform.
	if !regexp.MustCompile(`^golang:1\.26\.\d+(-[a-z]+)?(@sha256:[0-9a-f]{64})?$`).MatchString(build.BaseName) {
		t.Errorf("build stage FROM %q: want golang pinned to an exact 1.26.x tag", build.BaseName)
	}
	if build.Platform != "$BUILDPLATFORM" || build.Name != "build" {
		t.Errorf("build stage: platform %q name %q, want $BUILDPLATFORM and build", build.Platform, build.Name)
	}
	var env, run string
	var args []string
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env += kv.Key + "=" + kv.Value + " "
			}
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				args = append(args, a.Key)
			}
		case *instructions.RunCommand:
			run = strings.Join(c.CmdLine, " ")
		}
	}
	if !strings.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("build stage ENV %q: want CGO_ENABLED=0 (a static binary for distroless/static)", env)
	}
	for _, want := range []string{"go build", "-trimpath", "-tags disable_grpc_modules", "-s -w", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "./cmd/snapshot-job", "GOOS=$TARGETOS GOARCH=$TARGETARCH"} {
		if !strings.Contains(run, want) {
			t.Errorf("build command %q lacks %q", run, want)
		}
	}
	for _, want := range []string{"VERSION", "COMMIT", "TARGETOS", "TARGETARCH"} {
		if !slices.Contains(args, want) {
			t.Errorf("build stage does not declare ARG %s", want)
		}
	}

	if !regexp.MustCompile(`^gcr\.io/distroless/static-debian1[2-9]:nonroot(@sha256:[0-9a-f]{64})?$`).MatchString(final.BaseName) {
		t.Errorf("final FROM %q: want gcr.io/distroless/static-debianNN:nonroot", final.BaseName)
	}
	var user string
	var entrypoint *instructions.EntrypointCommand
	var copied bool
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.CmdCommand:
			t.Errorf("final stage has CMD %q: the chart passes the verb as the only argument", c.CmdLine)
		case *instructions.CopyCommand:
			copied = c.From == "build" && slices.Equal(c.SourcePaths, []string{"/out/snapshot-job"})
		case *instructions.RunCommand:
			t.Errorf("final stage runs %q: distroless has no shell", c.CmdLine)
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (runAsNonRoot needs a numeric user)", user)
	}
	if !copied {
		t.Errorf("final stage must copy /out/snapshot-job from the build stage")
	}
	if entrypoint == nil || entrypoint.PrependShell || !slices.Equal(entrypoint.CmdLine, []string{dockerEntrypoint}) {
		t.Errorf("ENTRYPOINT %+v, want the exec form [%q]", entrypoint, dockerEntrypoint)
	}
}

// dockerEntrypoint is where the image keeps the binary; the e2e test runs
// the host build in its place.
const dockerEntrypoint = "/usr/local/bin/snapshot-job"

// TestDockerignore: the build context holds what the build copies and
// nothing that could leak (git history, local tools, credentials).
func TestDockerignore(t *testing.T) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readRepoFile(t, ".dockerignore")))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	for path, wantExcluded := range map[string]bool{
		"go.mod": false, "go.sum": false,
		"cmd/snapshot-job/main.go":        false,
		"internal/config/config.go":       false,
		"internal/config/config_test.go":  true,
		".git/config":                     true,
		".tools/bin/versitygw":            true,
		"tools/azurite/node_modules/x":    true,
		"bin/snapshot-job":                true,
		"charts/snapshot-job/values.yaml": true,
		".env":                            true,
	} {
		excluded, err := pm.MatchesOrParentMatches(path)
		if err != nil {
			t.Fatal(err)
		}
		if excluded != wantExcluded {
			t.Errorf("%s: excluded from the build context = %v, want %v", path, excluded, wantExcluded)
		}
	}
}

// TestMakefileImageTarget: `make image` passes the stamps the Dockerfile
// expects.
func TestMakefileImageTarget(t *testing.T) {
	mk := string(readRepoFile(t, "Makefile"))
	for _, want := range []string{"--build-arg VERSION=$(VERSION)", "--build-arg COMMIT=$(COMMIT)"} {
		if !strings.Contains(mk, want) {
			t.Errorf("Makefile image target lacks %q", want)
		}
	}
}
