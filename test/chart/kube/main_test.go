package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// One control plane and one node serve every scenario; each scenario has
// its own namespace, volumes and storage server.
var (
	cluster *ControlPlane
	node    *Node
	// binary is the snapshot-job binary the node runs for the chart's image.
	binary string
	// scratch is the node's directory (pods, volumes).
	scratch string
)

const (
	nodeName = "node-1"
	// The image's ENTRYPOINT (Dockerfile) and the distroless nonroot user.
	imageEntrypoint = "/usr/local/bin/snapshot-job"
	imageUser       = 65532
	// chartImage is the chart's default image repository.
	chartImage = "ghcr.io/snapshot-job/snapshot-job"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	binDir, etcd := os.Getenv("KUBE_BIN_DIR"), os.Getenv("ETCD")
	if etcd == "" {
		etcd, _ = exec.LookPath("etcd")
	}
	if binDir == "" || etcd == "" {
		fmt.Fprintln(os.Stderr, "KUBE_BIN_DIR and etcd are needed: run `make k8s-test`")
		return 1
	}
	dir, err := os.MkdirTemp("", "snapshot-job-k8s-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	scratch = filepath.Join(dir, "node")

	// The node's processes run as the image's user: the binary must be
	// reachable by it.
	binary, err = buildBinary(filepath.Join(dir, "bin"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cpDir := filepath.Join(dir, "control-plane")
	if err := os.Mkdir(cpDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster, err = Start(ctx, Options{BinDir: binDir, Etcd: etcd, Dir: cpDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "control plane:", err)
		return 1
	}
	defer cluster.Stop()
	node, err = StartNode(ctx, cluster.Client, NodeOptions{
		Name: nodeName,
		Dir:  scratch,
		Images: map[string]Image{chartImage: {
			Binary:     binary,
			Entrypoint: []string{imageEntrypoint},
			// distroless/static's config.
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
			},
			User: imageUser, Group: imageUser,
		}},
		Allocatable: corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("2"),
			corev1.ResourceMemory:           resource.MustParse("8Gi"),
			corev1.ResourceEphemeralStorage: resource.MustParse("50Gi"),
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node stand-in:", err)
		return 1
	}
	defer node.Stop()
	code := m.Run()
	if code != 0 {
		for name, log := range cluster.LogFiles() {
			fmt.Fprintf(os.Stderr, "--- %s log, last lines:\n%s\n", name, tail(log, 40))
		}
	}
	return code
}

// buildBinary builds the binary as fixture.BuildBinary does, outside any
// test (TestMain has no testing.TB).
func buildBinary(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "snapshot-job")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "disable_grpc_modules", "-ldflags", "-X main.version=k8s -X main.commit=k8s", "-o", bin, "./cmd/snapshot-job")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/snapshot-job: %v\n%s", err, out)
	}
	return bin, nil
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}
