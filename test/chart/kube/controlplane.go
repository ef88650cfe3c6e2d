// Package kube runs a real Kubernetes control plane on 127.0.0.1 for the
// chart's scenarios: etcd, kube-apiserver and kube-controller-manager as
// built by `make kube-tools`, plus a node stand-in (node.go) that takes the
// place of the kubelet and the container runtime. Everything above the
// kubelet is the real thing: admission, validation and defaulting, RBAC,
// the Job, CronJob, garbage-collector and volume-binding controllers, Helm
// hooks, kubectl.
package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// controllers are the kube-controller-manager controllers the chart's
// objects meet in a cluster. Left out: the node lifecycle controller (the
// stand-in node sends no heartbeats), the scheduler (the stand-in binds its
// own pods), and controllers for objects the chart never creates.
const controllers = "job-controller,cronjob-controller,ttl-after-finished-controller,garbage-collector-controller,pod-garbage-collector-controller,persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller,serviceaccount-controller,namespace-controller"

// Options says where the binaries are.
type Options struct {
	// BinDir holds kube-apiserver, kube-controller-manager and kubectl.
	BinDir string
	// Etcd is the etcd binary.
	Etcd string
	// Dir is a scratch directory for data, certificates and logs.
	Dir string
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Kubeconfig is a kubeconfig file with cluster-admin rights (the user
	// is in system:masters), for kubectl and Helm.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	Kubectl    string

	dir   string
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// Start starts etcd, kube-apiserver and kube-controller-manager on free
// ports of 127.0.0.1 and returns once the API server is ready and the
// controllers run. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (cp *ControlPlane, err error) {
	cp = &ControlPlane{dir: opts.Dir, Kubectl: filepath.Join(opts.BinDir, "kubectl")}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, cp.logTails())
			cp.Stop()
			cp = nil
		}
	}()
	for _, bin := range []string{opts.Etcd, filepath.Join(opts.BinDir, "kube-apiserver"), filepath.Join(opts.BinDir, "kube-controller-manager"), cp.Kubectl} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("%s is missing: run `make kube-tools` (make k8s-test does it): %w", bin, err)
		}
	}

	etcdClient, err := freePort()
	if err != nil {
		return nil, err
	}
	etcdPeer, err := freePort()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://" + etcdClient
	if err := cp.start("etcd", opts.Etcd,
		"--name=default",
		"--data-dir="+filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://"+etcdPeer,
		"--initial-advertise-peer-urls=http://"+etcdPeer,
		"--initial-cluster=default=http://"+etcdPeer,
		"--logger=zap", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	if err := cp.waitHTTP(ctx, "etcd", http.DefaultClient, etcdURL+"/health", "", `"health":"true"`); err != nil {
		return nil, err
	}

	// Two identities: the test's admin and the controller manager. Both in
	// system:masters, so the controllers need no service-account tokens.
	adminToken, kcmToken := randomToken(), randomToken()
	tokens := filepath.Join(opts.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(
		adminToken+",admin,admin,\"system:masters\"\n"+
			kcmToken+",system:kube-controller-manager,kcm,\"system:masters\"\n"), 0o600); err != nil {
		return nil, err
	}
	saKey, saPub, err := serviceAccountKeys(opts.Dir)
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(opts.Dir, "certs")
	apiAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, apiPort, _ := net.SplitHostPort(apiAddr)
	if err := cp.start("kube-apiserver", filepath.Join(opts.BinDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+apiPort,
		// A self-signed serving certificate and its CA, generated at start.
		"--cert-dir="+certDir,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// The node stand-in serves logs on 127.0.0.1 (kubectl logs).
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	serverCA := filepath.Join(certDir, "apiserver.crt")
	apiURL := "https://" + apiAddr
	// The certificate exists once the API server has started serving.
	if err := cp.waitFile(ctx, "kube-apiserver", serverCA); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(serverCA)
	if err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(&rest.Config{Host: apiURL, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}})
	if err != nil {
		return nil, err
	}
	if err := cp.waitHTTP(ctx, "kube-apiserver", httpClient, apiURL+"/readyz", adminToken, "ok"); err != nil {
		return nil, err
	}

	cp.Kubeconfig = filepath.Join(opts.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.Kubeconfig, apiURL, caPEM, "admin", adminToken); err != nil {
		return nil, err
	}
	kcmKubeconfig := filepath.Join(opts.Dir, "kcm.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, apiURL, caPEM, "system:kube-controller-manager", kcmToken); err != nil {
		return nil, err
	}
	cp.Config = &rest.Config{
		Host: apiURL, BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		QPS:             100, Burst: 200,
	}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return nil, err
	}

	if err := cp.start("kube-controller-manager", filepath.Join(opts.BinDir, "kube-controller-manager"),
		"--kubeconfig="+kcmKubeconfig,
		"--controllers="+controllers,
		"--leader-elect=false",
		// No serving endpoint: nothing scrapes it, and a fixed port would
		// collide between parallel runs.
		"--secure-port=0",
		"--kube-api-qps=100", "--kube-api-burst=200",
	); err != nil {
		return nil, err
	}
	// The service-account controller creates "default" in every namespace:
	// once it has, the controller manager is up and its informers synced.
	if err := cp.waitFor(ctx, "kube-controller-manager", func(ctx context.Context) (bool, error) {
		_, err := cp.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, err
	}
	return cp, nil
}

// Stop stops the processes in reverse order and waits for them.
func (cp *ControlPlane) Stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	cp.procs = nil
}

// Logs returns the last lines of every component's log, for a failure
// message.
func (cp *ControlPlane) logTails() string {
	var b strings.Builder
	for _, p := range cp.procs {
		fmt.Fprintf(&b, "--- %s (%s), last lines:\n%s\n", p.name, p.log, tail(p.log, 30))
	}
	return b.String()
}

// LogFiles names each component's log file.
func (cp *ControlPlane) LogFiles() map[string]string {
	out := map[string]string{}
	for _, p := range cp.procs {
		out[p.name] = p.log
	}
	return out
}

func (cp *ControlPlane) start(name, bin string, args ...string) error {
	logPath := filepath.Join(cp.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Dies with the test binary, even when it is killed by -timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	cp.procs = append(cp.procs, p)
	return nil
}

// waitFor polls cond until it holds, the context ends, a minute passes, or
// a component exits.
func (cp *ControlPlane) waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		for _, p := range cp.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited while waiting for %s", p.name, what)
			default:
			}
		}
		ok, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (cp *ControlPlane) waitHTTP(ctx context.Context, what string, c *http.Client, url, token, want string) error {
	return cp.waitFor(ctx, what, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
		if err != nil {
			return false, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(want)), nil
	})
}

func (cp *ControlPlane) waitFile(ctx context.Context, what, path string) error {
	return cp.waitFor(ctx, what, func(context.Context) (bool, error) {
		info, err := os.Stat(path)
		return err == nil && info.Size() > 0, nil
	})
}

func writeKubeconfig(path, server string, ca []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["snapshot-job-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["snapshot-job-test"] = &clientcmdapi.Context{Cluster: "snapshot-job-test", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "snapshot-job-test"
	return clientcmd.WriteToFile(*cfg, path)
}

// serviceAccountKeys writes the key pair the API server signs and checks
// service-account tokens with.
func serviceAccountKeys(dir string) (keyPath, pubPath string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func randomToken() string {
	return rand.Text()
}

// freePort returns a 127.0.0.1 address nothing listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
